//! Answering one request: the signature and clock checks, a matching fault, the client token
//! (a resend gets the first answer), the operation's handler (a write it applies is counted),
//! and the answer in the operation's dialect (ROA JSON, RPC JSON or XML).

use super::record::record;
use super::routes::{answer, parse_query, route};
use super::*;

/// How an answer is shaped: ROA (`code`, `message`, `requestId`) or RPC (`Code`, …).
#[derive(Clone, Copy)]
pub(crate) enum Dialect {
    Roa,
    Rpc,
}

/// An answer before it becomes an HTTP response, so it can be recorded.
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) body: Option<Value>,
    pub(crate) headers: BTreeMap<String, String>,
    /// How an injected fault delivers it.
    pub(crate) delivery: faults::Delivery,
}

impl Outcome {
    pub(crate) fn ok(body: Option<Value>) -> Self {
        Outcome {
            status: 200,
            body,
            headers: BTreeMap::new(),
            delivery: faults::Delivery::Whole,
        }
    }

    /// No answer at all: the connection is closed before the request is applied
    /// (`reset_unapplied`). Recorded with status 0; served without a connection to close, it
    /// goes out as a bare 500.
    pub(crate) fn unanswered() -> Self {
        Outcome {
            status: 0,
            body: None,
            headers: BTreeMap::new(),
            delivery: faults::Delivery::CloseBeforeHeaders,
        }
    }

    pub(crate) fn error(dialect: Dialect, request_id: &str, e: &ApiError) -> Self {
        let body = match dialect {
            Dialect::Roa => {
                json!({"code": e.code, "message": e.message, "requestId": request_id, "status": e.status})
            }
            Dialect::Rpc => {
                json!({"Code": e.code, "Message": e.message, "RequestId": request_id, "HostId": "simulator"})
            }
        };
        Outcome {
            status: e.status,
            body: Some(body),
            headers: BTreeMap::new(),
            delivery: faults::Delivery::Whole,
        }
    }

    pub(crate) fn body_text(&self) -> String {
        match &self.body {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(v) => v.to_string(),
        }
    }

    pub(crate) fn into_response(self, request_id: &str) -> Response {
        let text = self.body_text();
        self.into_response_with(request_id, text)
    }

    /// The response, its body already rendered by `body_text` (which the request log shares:
    /// a body is serialized once).
    pub(crate) fn into_response_with(self, request_id: &str, text: String) -> Response {
        let status = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = match self.body {
            None => status.into_response(),
            Some(Value::String(_)) => (status, text).into_response(),
            Some(_) => (
                status,
                [(http::header::CONTENT_TYPE, "application/json")],
                text,
            )
                .into_response(),
        };
        if let Ok(v) = request_id.parse() {
            resp.headers_mut().insert("x-acs-request-id", v);
        }
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) = (http::HeaderName::from_bytes(k.as_bytes()), v.parse()) {
                resp.headers_mut().insert(name, value);
            }
        }
        resp
    }
}

/// Every API answer carries the simulator's clock as `Date`, as the cloud's do.
pub(crate) async fn api(
    AxumState(shared): AxumState<Arc<Core>>,
    req: axum::extract::Request,
) -> Response {
    let mut response = answer_request(shared.clone(), req).await;
    let date = httpdate::fmt_http_date(shared.settings.now().into());
    if let Ok(date) = date.parse() {
        response.headers_mut().insert(http::header::DATE, date);
    }
    response
}

pub(crate) async fn answer_request(shared: Arc<Core>, req: axum::extract::Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let (parts, body) = req.into_parts();
    let connection = parts.extensions.get::<serve::ConnectionHandle>().cloned();
    let Ok(body) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        let e = ApiError::new(413, "RequestTooLarge", "the request body is too large");
        return Outcome::error(Dialect::Roa, &request_id, &e).into_response(&request_id);
    };
    let method = parts.method.as_str().to_string();
    let raw_path = parts.uri.path().to_string();
    let mut query = parse_query(parts.uri.query());
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    let Some(api_path) = raw_path.strip_prefix(&shared.prefix) else {
        let e = ApiError::new(404, "InvalidURI", format!("no API under {raw_path}"));
        return Outcome::error(Dialect::Roa, &request_id, &e).into_response(&request_id);
    };
    // RPC parameters may also come as a form body (AssumeRoleWithOIDC sends its token there).
    if headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
    {
        query.extend(parse_query(Some(&String::from_utf8_lossy(&body))));
    }
    let is_rpc =
        (api_path == "/" || api_path.is_empty()) && query.iter().any(|(k, _)| k == "Action");
    if is_rpc
        && query
            .iter()
            .any(|(k, v)| k == "Action" && v == "AssumeRoleWithOIDC")
    {
        let outcome = match oidc::assume_role_with_oidc(&shared.settings, &query, &request_id) {
            Ok(body) => Outcome::ok(body),
            Err(e) => Outcome::error(Dialect::Rpc, &request_id, &e),
        };
        return outcome.into_response(&request_id);
    }
    let dialect = if is_rpc { Dialect::Rpc } else { Dialect::Roa };

    // Identify the operation.
    let identified = if is_rpc {
        let action = query
            .iter()
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        shared
            .table
            .operations()
            .find(|o| o.style == Style::Rpc && o.name == action)
            .map(|op| (op, HashMap::new()))
            .ok_or_else(|| {
                ApiError::new(
                    400,
                    "InvalidAction.NotFound",
                    format!("unknown action {action}"),
                )
            })
    } else {
        route(&shared.routes, &method, api_path)
            .and_then(|(r, params)| {
                shared
                    .table
                    .operations()
                    .find(|o| o.name == r.operation && o.style == Style::Roa)
                    .map(|op| (op, params))
            })
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "InvalidAction.NotFound",
                    format!("no operation for {method} {api_path}"),
                )
            })
    };
    let (operation, path_params) = match identified {
        Ok(found) => found,
        Err(e) => return Outcome::error(dialect, &request_id, &e).into_response(&request_id),
    };

    let outcome = serve_operation(
        &shared,
        dialect,
        operation,
        path_params,
        &method,
        &raw_path,
        &query,
        &headers,
        body.clone(),
        &request_id,
    )
    .await;
    let mut text = outcome.body_text();
    let delivery = outcome.delivery;
    if let faults::Delivery::Oversized(size) = delivery {
        text = format!("({size} bytes of padding)");
    }
    record(
        &shared, operation, &method, &raw_path, &query, &body, &headers, &outcome, &text,
    );
    let response = outcome.into_response_with(&request_id, text.clone());
    faults::deliver(response, text, delivery, connection).await
}

/// Verifies, applies injected faults, and answers.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve_operation(
    shared: &Core,
    dialect: Dialect,
    operation: &Operation,
    path_params: HashMap<String, String>,
    method: &str,
    raw_path: &str,
    query: &[(String, String)],
    headers: &BTreeMap<String, String>,
    body: Bytes,
    request_id: &str,
) -> Outcome {
    // Verify the signature exactly as the cloud does.
    let now = shared.settings.now();
    let account = match dialect {
        Dialect::Rpc => shared.settings.keys.verify_rpc(method, query, now),
        Dialect::Roa => shared
            .settings
            .keys
            .verify_roa(method, raw_path, query, headers, &body, now),
    };
    let account = match account {
        Ok(a) => a,
        Err(e) => return Outcome::error(dialect, request_id, &e),
    };

    // Injected faults: those that answer on their own, or close the connection, before the
    // request is applied.
    let fault = take_fault(shared, &operation.name);
    if let Some(fault) = &fault {
        if fault.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        }
        if fault.kind == FaultKind::Answer && fault.status != 0 {
            let e = ApiError::new(fault.status, &fault.code, fault.message.clone());
            let mut outcome = Outcome::error(dialect, request_id, &e);
            outcome.headers = fault.headers.clone();
            return outcome;
        }
        if let Some((status, content_type, text, mut headers)) = fault.made_up() {
            headers.insert("content-type".into(), content_type.into());
            return Outcome {
                status,
                body: Some(Value::String(text)),
                headers,
                delivery: fault.delivery(),
            };
        }
        if fault.kind == FaultKind::ResetUnapplied {
            return Outcome::unanswered();
        }
    }

    let request = Request {
        request_id: request_id.to_string(),
        account,
        path_params,
        query: query.to_vec(),
        body,
    };
    let mut outcome = apply(shared, dialect, operation, &request);
    // Faults that deliver the applied request's answer late or badly.
    if let Some(fault) = fault {
        if fault.answer_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fault.answer_delay_ms)).await;
        }
        outcome.delivery = fault.delivery();
    }
    outcome
}

/// Applies the request as the cloud does: a write that repeats a client token already applied
/// gets the first answer again and changes nothing; any other request goes to the operation's
/// handler. The token memory stays locked from the look-up to the remembering, so two resends
/// racing each other still apply once.
fn apply(shared: &Core, dialect: Dialect, operation: &Operation, request: &Request) -> Outcome {
    let token = if operation.policy.read {
        None
    } else {
        client_tokens::client_token(operation, &request.query, &request.body)
    };
    let Some(token) = token else {
        return handle(shared, dialect, operation, request, None);
    };
    let mut tokens = shared.client_tokens.lock().expect("client tokens lock");
    if let Some(first) = tokens.first_answer(&request.account, &operation.name, &token) {
        return Outcome {
            status: first.status,
            body: first.body.clone(),
            headers: BTreeMap::new(),
            delivery: faults::Delivery::Whole,
        };
    }
    let outcome = handle(shared, dialect, operation, request, Some(&token));
    if (200..300).contains(&outcome.status) {
        tokens.remember(
            &request.account,
            &operation.name,
            &token,
            client_tokens::FirstAnswer {
                status: outcome.status,
                body: outcome.body.clone(),
            },
        );
    }
    outcome
}

/// The operation's handler answers; a write it applied is counted (`applied`).
fn handle(
    shared: &Core,
    dialect: Dialect,
    operation: &Operation,
    request: &Request,
    client_token: Option<&str>,
) -> Outcome {
    match answer(shared, operation, request) {
        Ok(body) => {
            if !operation.policy.read {
                let write = applied::AppliedWrite::of(operation, request, client_token);
                shared
                    .applied
                    .lock()
                    .expect("applied lock")
                    .push(write, request.body.len());
            }
            Outcome::ok(body)
        }
        Err(e) => Outcome::error(dialect, &request.request_id, &e),
    }
}

pub(crate) fn take_fault(shared: &Core, operation: &str) -> Option<Fault> {
    let mut faults = shared.faults.lock().expect("faults lock");
    let i = faults
        .iter()
        .position(|f| f.operation.as_deref().is_none_or(|o| o == operation))?;
    let fault = faults.get_mut(i)?;
    let taken = fault.clone();
    fault.times = fault.times.saturating_sub(1);
    if fault.times == 0 {
        faults.remove(i);
    }
    Some(taken)
}
