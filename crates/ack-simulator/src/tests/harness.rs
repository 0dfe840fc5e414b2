//! What the socket tests share: a caller that signs its requests as the gateway does (ROA V1)
//! and sends them over plain HTTP/1.1, the answer as read off the connection, a simulator to
//! call, and the calls most tests make (create a cluster, wait for a task, inject a fault).

use crate::secret::Secret;
use crate::signer::{new_nonce, roa, SigningKey};
use crate::table::{self, Style};
use crate::{Fault, Simulator, SimulatorOptions, DEFAULT_REGION};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a simulated task runs in most of these tests.
pub(super) const TASK: Duration = Duration::from_millis(300);
/// How long it runs where a test acts while it runs: long enough for a few requests, even on a
/// busy machine.
pub(super) const LONG_TASK: Duration = Duration::from_millis(1200);

/// What came back: status 0 when the connection closed before any answer.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) request_id: String,
    pub(super) body: Value,
    /// The whole body arrived (as long as announced, or its last chunk).
    pub(super) whole: bool,
}

impl Reply {
    pub(super) fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub(super) fn text(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_default().to_string()
    }
}

/// A caller with one access key.
#[derive(Clone)]
pub(super) struct Client {
    addr: SocketAddr,
    key: SigningKey,
}

impl Client {
    pub(super) fn root(sim: &Simulator) -> Client {
        let (id, secret) = sim.root_key();
        Client {
            addr: sim.addr(),
            key: SigningKey::new(id, secret, None),
        }
    }

    /// A caller of another account.
    pub(super) fn other_account(sim: &Simulator) -> Client {
        sim.add_key("LTAIothertestkey", "other-secret", "2000000000000002");
        Client {
            addr: sim.addr(),
            key: SigningKey::new("LTAIothertestkey", Secret::new("other-secret"), None),
        }
    }

    /// Calls `operation` (ROA), its path filled from `params`, with `body` as JSON.
    pub(super) async fn op(
        &self,
        operation: &str,
        params: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let (method, path) = roa_route(operation, params);
        let body = body.map(|b| b.to_string().into_bytes());
        self.signed(&method, &path, &[], body).await
    }

    pub(super) async fn signed(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let nonce = new_nonce();
        let extra = BTreeMap::new();
        let mut headers = roa::base_headers(
            "2015-12-15",
            DEFAULT_REGION,
            &date,
            &nonce,
            body.as_deref(),
            &self.key,
            &extra,
        );
        let authorization = roa::authorization(
            &roa::RoaRequest {
                method,
                path,
                query,
                headers: &headers,
            },
            &self.key,
        );
        headers.push(("authorization".into(), authorization.into()));
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        send(self.addr, method, path, query, &headers, body.as_deref()).await
    }

    /// Calls a ROA `operation` with query parameters (wire names).
    pub(super) async fn op_query(
        &self,
        operation: &str,
        params: &[(&str, &str)],
        query: &[(&str, &str)],
    ) -> Reply {
        let (method, path) = roa_route(operation, params);
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.signed(&method, &path, &query, None).await
    }
}

/// A ROA `operation`'s method and path, the path filled from `params`.
fn roa_route(operation: &str, params: &[(&str, &str)]) -> (String, String) {
    let table = table::builtin();
    let op = table
        .operations()
        .find(|o| o.name == operation && o.style == Style::Roa)
        .unwrap_or_else(|| panic!("{operation} is a ROA operation"));
    let mut path = op.path.clone();
    for (name, value) in params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    (op.method.clone(), path)
}

/// One HTTP/1.1 exchange on a fresh connection; what was read before the connection closed.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> Reply {
    let mut target = path.to_string();
    if !query.is_empty() {
        let pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, NON_ALPHANUMERIC),
                    utf8_percent_encode(v, NON_ALPHANUMERIC)
                )
            })
            .collect();
        target = format!("{target}?{}", pairs.join("&"));
    }
    let body = body.unwrap_or_default();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the simulator accepts");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("request head sent");
    stream.write_all(body).await.expect("request body sent");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let read = async {
        // A reset connection ends the answer like a closed one: what was read is all there is.
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the simulator answers or closes in time");
    parse(&raw)
}

/// Status, request id and JSON body of an HTTP/1.1 answer, and whether all of it arrived.
fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        assert!(raw.is_empty(), "a partial answer: {text}");
        return Reply {
            status: 0,
            request_id: String::new(),
            body: Value::Null,
            whole: false,
        };
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let mut request_id = String::new();
    let mut announced = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.to_ascii_lowercase(), v.trim());
            match k.as_str() {
                "x-acs-request-id" => request_id = v.to_string(),
                "content-length" => announced = v.parse::<usize>().ok(),
                "transfer-encoding" => chunked = v.contains("chunked"),
                _ => {}
            }
        }
    }
    // A chunked body is only looked at for its end: these tests read whole answers, which the
    // simulator sends with a length.
    let whole = match (chunked, announced) {
        (true, _) => body.ends_with("0\r\n\r\n"),
        (false, Some(len)) => body.len() == len,
        (false, None) => true,
    };
    let body = if body.is_empty() || chunked {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
    };
    Reply {
        status,
        request_id,
        body,
        whole,
    }
}

/// An unsigned call to the control API.
pub(super) async fn control(
    sim: &Simulator,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string().into_bytes());
    let headers = [("content-type".to_string(), "application/json".to_string())];
    send(sim.addr(), method, path, &[], &headers, body.as_deref()).await
}

pub(super) async fn simulator() -> Simulator {
    simulator_with(TASK).await
}

pub(super) async fn simulator_with(task_duration: Duration) -> Simulator {
    Simulator::start(SimulatorOptions {
        task_duration,
        ..SimulatorOptions::default()
    })
    .await
    .expect("the simulator starts")
}

pub(super) async fn cluster_count(c: &Client) -> usize {
    let list = c.op("DescribeClustersV1", &[], None).await;
    assert_eq!(list.status, 200, "{list:?}");
    list.body["clusters"].as_array().map_or(0, Vec::len)
}

pub(super) async fn cluster_state(c: &Client, id: &str) -> String {
    let detail = c
        .op("DescribeClusterDetail", &[("cluster_id", id)], None)
        .await;
    assert_eq!(detail.status, 200, "{detail:?}");
    detail.text("state")
}

/// Waits for a task to end; its final state.
pub(super) async fn wait_task(c: &Client, task: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = c.op("DescribeTaskInfo", &[("task_id", task)], None).await;
        assert_eq!(info.status, 200, "{info:?}");
        let state = info.text("state");
        if !matches!(state.as_str(), "running" | "paused") {
            return state;
        }
        assert!(Instant::now() < deadline, "task {task} still {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A cluster created and running.
pub(super) async fn running_cluster(c: &Client, name: &str) -> String {
    let created = create(c, name, None).await;
    assert_eq!(created.status, 200, "{created:?}");
    assert_eq!(wait_task(c, &created.text("task_id")).await, "success");
    created.text("cluster_id")
}

pub(super) async fn create(c: &Client, name: &str, token: Option<&str>) -> Reply {
    let mut body = json!({"name": name, "region_id": DEFAULT_REGION});
    if let Some(token) = token {
        body["client_token"] = json!(token);
    }
    c.op("CreateCluster", &[], Some(body)).await
}

pub(super) fn inject(sim: &Simulator, operation: &str, fault: Fault) {
    sim.inject(Fault {
        operation: Some(operation.to_string()),
        ..fault
    });
}
