//! The embedded ACK simulator: a real HTTP server that verifies ROA and RPC signatures the way
//! the cloud does, keeps clusters and tasks in memory, answers every operation of the table in
//! its real shape, and can inject faults. It is what `cargo run` talks to without credentials,
//! what every test talks to, and what other projects' tests can run (`ack-gateway simulator`).
//!
//! Invariant: the simulator shares the signer and the operation table with the gateway but none
//! of the gateway's request path, so a mapping bug cannot hide behind a matching bug.

mod addons;
mod auth;
mod faults;
mod handlers;
mod nodepools;
mod oidc;
pub mod sample;
mod serve;
mod state;
mod tags;
mod templates;
mod upgrades;

// The signer and the table, under the names the simulator's modules use.
use ack_signer as signer;
use ack_signer::secret;
use ack_table as table;

use crate::secret::Secret;
use crate::table::{Location, Operation, OperationTable, Style};
use axum::extract::State as AxumState;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use auth::{KeyStore, KnownKey};
pub use faults::{Fault, FaultKind};
pub use serve::SimulatorTls;

/// The account the simulator's generated root key belongs to.
pub const DEFAULT_ACCOUNT: &str = "1000000000000001";
/// The region the simulator's `default` profile uses.
pub const DEFAULT_REGION: &str = "cn-hangzhou";

#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    pub listen: SocketAddr,
    /// How long simulated tasks run.
    pub task_duration: Duration,
    /// Lifetime of issued STS triples, overriding the requested `DurationSeconds`.
    pub sts_duration: Option<Duration>,
    /// A path prefix the API is served under (e.g. `/roa`), as behind an API gateway.
    pub path_prefix: String,
    /// Access keys accepted: (id, secret, account). Empty: one random key is generated.
    pub keys: Vec<(String, Secret, String)>,
    /// How far the simulator's clock is from the machine's, in seconds (negative: behind).
    /// It checks request times against it and sends it as `Date` on every answer.
    pub clock_skew_seconds: i64,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<SimulatorTls>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            task_duration: Duration::from_secs(3),
            sts_duration: None,
            path_prefix: String::new(),
            keys: Vec::new(),
            clock_skew_seconds: 0,
            tls: None,
        }
    }
}

/// An error answer, in the API's error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A request as the simulator received it (credentials and signature headers left out).
#[derive(Debug, Clone, Serialize)]
pub struct RecordedRequest {
    pub operation: String,
    pub method: String,
    /// The path exactly as received, percent-encoding included.
    pub raw_path: String,
    /// Decoded query parameters in the order received.
    pub query: Vec<(String, String)>,
    pub body: String,
    pub headers: BTreeMap<String, String>,
    /// The status and body answered.
    pub status: u16,
    pub response: String,
}

/// Settings and counters the handlers read.
pub struct SimSettings {
    pub keys: KeyStore,
    pub task_duration: Duration,
    pub sts_duration: Option<Duration>,
    /// Per-operation task durations overriding `task_duration`.
    task_durations: Mutex<HashMap<String, Duration>>,
    task_failures: Mutex<HashMap<String, VecDeque<(String, String)>>>,
    /// See `SimulatorOptions::clock_skew_seconds`.
    clock_skew: time::Duration,
    sts_issued: AtomicU64,
    /// OIDC tokens AssumeRoleWithOIDC accepts: token → (provider ARN, account).
    oidc_tokens: Mutex<HashMap<String, (String, String)>>,
}

impl SimSettings {
    /// How long a task started by `operation` runs.
    pub fn duration_for(&self, operation: &str) -> Duration {
        self.task_durations
            .lock()
            .expect("durations lock")
            .get(operation)
            .copied()
            .unwrap_or(self.task_duration)
    }

    /// The failure the next task started by `operation` ends with, if one was queued.
    /// The simulator's clock (the machine's, skewed as configured).
    pub fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::now_utc() + self.clock_skew
    }

    /// The next task `operation` starts fails with `code` and `message`.
    fn queue_failure(&self, operation: &str, code: String, message: String) {
        self.task_failures
            .lock()
            .expect("failures lock")
            .entry(operation.to_string())
            .or_default()
            .push_back((code, message));
    }

    pub fn take_failure(&self, operation: &str) -> Option<(String, String)> {
        self.task_failures
            .lock()
            .expect("failures lock")
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
    }

    pub fn count_sts_issue(&self) {
        self.sts_issued.fetch_add(1, Ordering::Relaxed);
    }
}

struct Shared {
    table: Arc<OperationTable>,
    routes: Vec<Route>,
    settings: SimSettings,
    state: Mutex<state::State>,
    recorded: Mutex<Record>,
    faults: Mutex<VecDeque<Fault>>,
    prefix: String,
}

/// Recorded requests kept, oldest dropped first: at most this many…
const RECORD_LIMIT: usize = 50_000;
/// …and at most this many bytes of paths, queries, headers, bodies and answers.
const RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The request log: the latest requests within `RECORD_LIMIT` and `RECORD_BYTES`.
#[derive(Default)]
struct Record {
    entries: VecDeque<RecordedRequest>,
    bytes: usize,
}

impl Record {
    fn size(r: &RecordedRequest) -> usize {
        r.raw_path.len()
            + r.body.len()
            + r.response.len()
            + r.query
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + r.headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
            + 128
    }

    fn push(&mut self, r: RecordedRequest) {
        self.bytes += Self::size(&r);
        self.entries.push_back(r);
        while self.entries.len() > RECORD_LIMIT || self.bytes > RECORD_BYTES {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(Self::size(&old));
        }
    }

    fn iter(&self) -> impl Iterator<Item = &RecordedRequest> {
        self.entries.iter()
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

/// A running simulator; stops when dropped or on [`Simulator::shutdown`].
pub struct Simulator {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    shared: Arc<Shared>,
    root_key: (String, Secret),
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a handler sees of a request.
pub struct Request {
    pub request_id: String,
    pub account: String,
    pub path_params: HashMap<String, String>,
    pub query: Vec<(String, String)>,
    pub body: Bytes,
}

impl Request {
    pub fn path_param(&self, name: &str) -> &str {
        self.path_params.get(name).map(String::as_str).unwrap_or("")
    }

    /// Page size (default 10, at most 100) and 1-based page number from the query.
    pub fn page(&self, size_key: &str, number_key: &str) -> (usize, usize) {
        let number = |k: &str| self.query_param(k).and_then(|v| v.parse::<usize>().ok());
        (
            number(size_key).unwrap_or(10).clamp(1, 100),
            number(number_key).unwrap_or(1).max(1),
        )
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

// === impl Simulator ===

impl Simulator {
    pub async fn start(options: SimulatorOptions) -> std::io::Result<Simulator> {
        let table = table::builtin();
        let keys = KeyStore::default();
        let mut configured = options.keys.clone();
        if configured.is_empty() {
            configured.push((
                format!(
                    "LTAIsim{}",
                    &uuid::Uuid::new_v4().simple().to_string()[..16]
                ),
                Secret::new(uuid::Uuid::new_v4().simple().to_string()),
                DEFAULT_ACCOUNT.to_string(),
            ));
        }
        for (id, secret, account) in &configured {
            keys.add(
                id.clone(),
                KnownKey {
                    secret: secret.clone(),
                    account: account.clone(),
                    sts: None,
                },
            );
        }
        let root_key = (configured[0].0.clone(), configured[0].1.clone());
        let shared = Arc::new(Shared {
            routes: build_routes(&table),
            table,
            settings: SimSettings {
                keys,
                task_duration: options.task_duration,
                sts_duration: options.sts_duration,
                task_durations: Mutex::new(HashMap::new()),
                task_failures: Mutex::new(HashMap::new()),
                clock_skew: time::Duration::seconds(options.clock_skew_seconds),
                sts_issued: AtomicU64::new(0),
                oidc_tokens: Mutex::new(HashMap::new()),
            },
            state: Mutex::new(state::State::default()),
            recorded: Mutex::new(Record::default()),
            faults: Mutex::new(VecDeque::new()),
            prefix: options.path_prefix.trim_end_matches('/').to_string(),
        });
        let app = axum::Router::new()
            .route("/__simulator/requests", axum::routing::get(list_requests))
            .route("/__simulator/faults", axum::routing::post(add_fault))
            .route(
                "/__simulator/task-failures",
                axum::routing::post(add_task_failure),
            )
            .fallback(api)
            .with_state(shared.clone());
        let tls = options.tls.as_ref().map(serve::acceptor).transpose()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = serve::spawn(listener, app, tls, stopped);
        tracing::debug!(%addr, scheme, "simulator listening");
        Ok(Simulator {
            addr,
            scheme,
            shared,
            root_key,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the API (`http://127.0.0.1:PORT[/prefix]`, `https://…` when serving TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://{}{}", self.scheme, self.addr, self.shared.prefix)
    }

    /// The generated (or first configured) AccessKey pair.
    pub fn root_key(&self) -> (String, Secret) {
        self.root_key.clone()
    }

    /// Accepts another access key.
    pub fn add_key(&self, id: &str, secret: &str, account: &str) {
        self.shared.settings.keys.add(
            id.to_string(),
            KnownKey {
                secret: Secret::new(secret),
                account: account.to_string(),
                sts: None,
            },
        );
    }

    /// Every recorded request, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .recorded
            .lock()
            .expect("record lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Recorded requests of one operation.
    pub fn requests_for(&self, operation: &str) -> Vec<RecordedRequest> {
        self.shared
            .recorded
            .lock()
            .expect("record lock")
            .iter()
            .filter(|r| r.operation == operation)
            .cloned()
            .collect()
    }

    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .recorded
            .lock()
            .expect("record lock")
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    pub fn clear_requests(&self) {
        self.shared.recorded.lock().expect("record lock").clear();
    }

    pub fn inject(&self, fault: Fault) {
        self.shared
            .faults
            .lock()
            .expect("faults lock")
            .push_back(fault);
    }

    /// The next task started by `operation` fails with this error.
    pub fn fail_next_task(&self, operation: &str, code: &str, message: &str) {
        self.shared
            .settings
            .queue_failure(operation, code.to_string(), message.to_string());
    }

    /// Tasks started by `operation` from now on run for `duration` (e.g. upgrades that take
    /// longer than creations).
    pub fn set_task_duration(&self, operation: &str, duration: Duration) {
        self.shared
            .settings
            .task_durations
            .lock()
            .expect("durations lock")
            .insert(operation.to_string(), duration);
    }

    /// Makes AssumeRoleWithOIDC accept `token` from `provider_arn` for `account`.
    pub fn add_oidc_token(&self, provider_arn: &str, token: &str, account: &str) {
        self.shared
            .settings
            .oidc_tokens
            .lock()
            .expect("oidc lock")
            .insert(
                token.to_string(),
                (provider_arn.to_string(), account.to_string()),
            );
    }

    /// Every STS triple issued so far: (AccessKeyId, secret, token).
    pub fn issued_sts_credentials(&self) -> Vec<(String, Secret, Secret)> {
        self.shared.settings.keys.issued_sts()
    }

    /// How many STS triples have been issued.
    pub fn sts_issued(&self) -> u64 {
        self.shared.settings.sts_issued.load(Ordering::Relaxed)
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// --- Routing ---

enum Segment {
    Literal(String),
    Param(String),
}

struct Route {
    method: String,
    segments: Vec<Segment>,
    operation: String,
    literal_count: usize,
}

fn build_routes(table: &OperationTable) -> Vec<Route> {
    table
        .operations()
        .filter(|op| op.style == Style::Roa)
        .map(|op| {
            let segments: Vec<Segment> = op
                .path
                .split('/')
                .skip(1)
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_string()),
                        None => Segment::Literal(s.to_string()),
                    },
                )
                .collect();
            let literal_count = segments
                .iter()
                .filter(|s| matches!(s, Segment::Literal(_)))
                .count();
            Route {
                method: op.method.clone(),
                segments,
                operation: op.name.clone(),
                literal_count,
            }
        })
        .collect()
}

/// Matches a raw (still percent-encoded) path; the most specific route wins.
fn route<'a>(
    routes: &'a [Route],
    method: &str,
    raw_path: &str,
) -> Option<(&'a Route, HashMap<String, String>)> {
    let parts: Vec<&str> = raw_path.split('/').skip(1).collect();
    let mut best: Option<(&Route, HashMap<String, String>)> = None;
    for r in routes
        .iter()
        .filter(|r| r.method == method && r.segments.len() == parts.len())
    {
        let mut params = HashMap::new();
        let ok = r.segments.iter().zip(&parts).all(|(seg, part)| match seg {
            Segment::Literal(l) => l == part,
            Segment::Param(name) => {
                params.insert(name.clone(), decode(part));
                !part.is_empty()
            }
        });
        if ok
            && best
                .as_ref()
                .is_none_or(|(b, _)| r.literal_count > b.literal_count)
        {
            best = Some((r, params));
        }
    }
    best
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

// --- HTTP handlers ---

async fn list_requests(AxumState(shared): AxumState<Arc<Shared>>) -> Response {
    let all: Vec<RecordedRequest> = shared
        .recorded
        .lock()
        .expect("record lock")
        .iter()
        .cloned()
        .collect();
    axum::Json(all).into_response()
}

async fn add_fault(
    AxumState(shared): AxumState<Arc<Shared>>,
    axum::Json(fault): axum::Json<Fault>,
) -> Response {
    shared.faults.lock().expect("faults lock").push_back(fault);
    http::StatusCode::NO_CONTENT.into_response()
}

/// The next task `operation` starts fails with this code and message.
#[derive(Debug, Deserialize)]
struct TaskFailure {
    operation: String,
    code: String,
    #[serde(default)]
    message: String,
}

async fn add_task_failure(
    AxumState(shared): AxumState<Arc<Shared>>,
    axum::Json(failure): axum::Json<TaskFailure>,
) -> Response {
    shared
        .settings
        .queue_failure(&failure.operation, failure.code, failure.message);
    http::StatusCode::NO_CONTENT.into_response()
}

/// How an answer is shaped: ROA (`code`, `message`, `requestId`) or RPC (`Code`, …).
#[derive(Clone, Copy)]
enum Dialect {
    Roa,
    Rpc,
}

/// An answer before it becomes an HTTP response, so it can be recorded.
struct Outcome {
    status: u16,
    body: Option<Value>,
    headers: BTreeMap<String, String>,
    /// How an injected fault delivers it.
    delivery: faults::Delivery,
}

impl Outcome {
    fn ok(body: Option<Value>) -> Self {
        Outcome {
            status: 200,
            body,
            headers: BTreeMap::new(),
            delivery: faults::Delivery::Whole,
        }
    }

    fn error(dialect: Dialect, request_id: &str, e: &ApiError) -> Self {
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

    fn body_text(&self) -> String {
        match &self.body {
            None => String::new(),
            Some(Value::String(text)) => text.clone(),
            Some(v) => v.to_string(),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        let text = self.body_text();
        self.into_response_with(request_id, text)
    }

    /// The response, its body already rendered by `body_text` (which the request log shares:
    /// a body is serialized once).
    fn into_response_with(self, request_id: &str, text: String) -> Response {
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
async fn api(AxumState(shared): AxumState<Arc<Shared>>, req: axum::extract::Request) -> Response {
    let mut response = answer_request(shared.clone(), req).await;
    let date = httpdate::fmt_http_date(shared.settings.now().into());
    if let Ok(date) = date.parse() {
        response.headers_mut().insert(http::header::DATE, date);
    }
    response
}

async fn answer_request(shared: Arc<Shared>, req: axum::extract::Request) -> Response {
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
async fn serve_operation(
    shared: &Shared,
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

    // Injected faults.
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
    }

    let request = Request {
        request_id: request_id.to_string(),
        account,
        path_params,
        query: query.to_vec(),
        body,
    };
    let mut outcome = match answer(shared, operation, &request) {
        Ok(body) => Outcome::ok(body),
        Err(e) => Outcome::error(dialect, request_id, &e),
    };
    if let Some(fault) = fault {
        outcome.delivery = fault.delivery();
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    op: &Operation,
    method: &str,
    raw_path: &str,
    query: &[(String, String)],
    body: &[u8],
    headers: &BTreeMap<String, String>,
    outcome: &Outcome,
    body_text: &str,
) {
    let mut headers = headers.clone();
    headers.remove("authorization");
    headers.remove("x-acs-security-token");
    let query = query
        .iter()
        .filter(|(k, _)| k != "Signature" && k != "SecurityToken")
        .cloned()
        .collect();
    // Issued credentials are not kept in the record.
    let response = if op.policy.secrets {
        String::from("(withheld: carries secrets)")
    } else {
        body_text.to_string()
    };
    let mut recorded = shared.recorded.lock().expect("record lock");
    recorded.push(RecordedRequest {
        operation: op.name.clone(),
        method: method.to_string(),
        raw_path: raw_path.to_string(),
        query,
        body: String::from_utf8_lossy(body).into_owned(),
        headers,
        status: outcome.status,
        response,
    });
}

fn take_fault(shared: &Shared, operation: &str) -> Option<Fault> {
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

/// Dispatches to a stateful handler, or answers with a sample of the operation's shape.
fn answer(shared: &Shared, op: &Operation, req: &Request) -> handlers::Answer {
    let s = &shared.settings;
    if op.style == Style::Rpc {
        return match op.name.as_str() {
            "AssumeRole" => handlers::assume_role(req, s),
            "AddExistedNodes" => handlers::add_existed_nodes(req),
            _ => Ok(sample::response(op, &req.request_id)),
        };
    }
    // Path parameters are always required, as the API validates them.
    for f in op
        .fields
        .iter()
        .filter(|f| f.location == Some(Location::Path))
    {
        if req.path_param(f.proto_name()).is_empty() {
            return Err(ApiError::new(
                400,
                "MissingParameter",
                format!("{} is required", f.json_key()),
            ));
        }
    }
    let mut state = shared.state.lock().expect("state lock");
    state.tick();
    match op.name.as_str() {
        "CreateCluster" => handlers::create_cluster(&mut state, req, s),
        "DescribeClusterDetail" => handlers::describe_cluster_detail(&mut state, req),
        "DescribeClustersV1" => handlers::describe_clusters_v1(&mut state, req),
        "DeleteCluster" => handlers::delete_cluster(&mut state, req, s),
        "ScaleOutCluster" => handlers::scale_out_cluster(&mut state, req, s),
        "AttachInstances" => handlers::attach_instances(&mut state, req, s),
        "DescribeTaskInfo" => handlers::describe_task_info(&mut state, req),
        "CreateClusterNodePool" => nodepools::create(&mut state, req, s),
        "DescribeClusterNodePools" => nodepools::list(&mut state, req),
        "DescribeClusterNodes" => nodepools::nodes(&mut state, req),
        "DescribeClusterNodePoolDetail" => nodepools::detail(&mut state, req),
        "ModifyClusterNodePool" => nodepools::modify(&mut state, req, s),
        "ScaleClusterNodePool" => nodepools::scale(&mut state, req, s),
        "DeleteClusterNodepool" => nodepools::delete(&mut state, req, s),
        "CreateTemplate" => templates::create(&mut state, req),
        "DescribeTemplates" => templates::list(&mut state, req),
        "DescribeTemplateAttribute" => templates::attribute(&mut state, req),
        "UpdateTemplate" => templates::update(&mut state, req),
        "DeleteTemplate" => templates::delete(&mut state, req),
        "InstallClusterAddons" => addons::install(&mut state, req, s),
        "UnInstallClusterAddons" => addons::uninstall(&mut state, req, s),
        "UpgradeClusterAddons" => addons::upgrade(&mut state, req, s),
        "DescribeClusterAddonsVersion" => addons::versions(&mut state, req),
        "DescribeClusterAddonUpgradeStatus" => addons::upgrade_status(&mut state, req),
        "DescribeClusterAddonsUpgradeStatus" => addons::upgrade_statuses(&mut state, req),
        "GetClusterAddonInstance" => addons::instance(&mut state, req),
        "ListClusterAddonInstances" => addons::instances(&mut state, req),
        "TagResources" => tags::tag(&mut state, req),
        "UntagResources" => tags::untag(&mut state, req),
        "ListTagResources" => tags::list(&mut state, req),
        "ModifyClusterTags" => tags::modify_cluster_tags(&mut state, req),
        "UpgradeCluster" => upgrades::upgrade(&mut state, req, s),
        "GetUpgradeStatus" => upgrades::status(&mut state, req),
        "PauseClusterUpgrade" => upgrades::pause(&mut state, req),
        "ResumeUpgradeCluster" => upgrades::resume(&mut state, req),
        "CancelClusterUpgrade" => upgrades::cancel(&mut state, req),
        _ => Ok(sample::response(op, &req.request_id)),
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn the_request_log_is_bounded_in_bytes_as_well_as_in_count() {
        let mut record = Record::default();
        let big = |i: usize| RecordedRequest {
            operation: format!("op{i}"),
            method: "GET".into(),
            raw_path: "/".into(),
            query: Vec::new(),
            body: String::new(),
            headers: BTreeMap::new(),
            status: 200,
            response: "x".repeat(1 << 20),
        };
        for i in 0..100 {
            record.push(big(i));
        }
        assert!(record.bytes <= RECORD_BYTES);
        assert!(record.iter().count() <= 16);
        assert_eq!(
            record.iter().last().map(|r| r.operation.as_str()),
            Some("op99")
        );
        record.clear();
        assert_eq!((record.iter().count(), record.bytes), (0, 0));
    }
}
