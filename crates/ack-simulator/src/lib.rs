//! The embedded ACK simulator: a real HTTP server that verifies ROA and RPC signatures the way
//! the cloud does, keeps clusters and tasks in memory, answers every operation of the table in
//! its real shape, and can inject faults. It is what `cargo run` talks to without credentials,
//! what every test talks to, and what other projects' tests can run (`ack-gateway simulator`).
//!
//! Invariant: the simulator shares the signer and the operation table with the gateway but none
//! of the gateway's request path, so a mapping bug cannot hide behind a matching bug.

mod addons;
mod applied;
mod auth;
mod client_tokens;
mod control;
mod events;
mod faults;
mod handlers;
mod inspect;
mod nodepools;
mod oidc;
mod record;
mod respond;
mod routes;
pub mod sample;
mod serve;
mod state;
mod tags;
mod templates;
mod upgrades;

#[cfg(test)]
mod tests;

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

pub use applied::{AppliedWrite, AppliedWrites};
pub use auth::{KeyStore, KnownKey};
pub use record::RecordedRequest;

use control::{add_fault, add_task_failure, list_applied, list_requests};
pub use faults::{Fault, FaultKind};
use record::RequestLog;
use respond::api;
use routes::{build_routes, Route};
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

struct Core {
    table: Arc<OperationTable>,
    routes: Vec<Route>,
    settings: SimSettings,
    state: Mutex<state::Resources>,
    recorded: Mutex<RequestLog>,
    /// The writes applied, for tests to count (`applied`).
    applied: Mutex<applied::AppliedLog>,
    /// The first answers of writes applied with a client token (`client_tokens`).
    client_tokens: Mutex<client_tokens::ClientTokens>,
    faults: Mutex<VecDeque<Fault>>,
    prefix: String,
}

/// A running simulator; stops when dropped or on [`Simulator::shutdown`].
pub struct Simulator {
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    shared: Arc<Core>,
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
        let shared = Arc::new(Core {
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
            state: Mutex::new(state::Resources::default()),
            recorded: Mutex::new(RequestLog::default()),
            applied: Mutex::new(applied::AppliedLog::default()),
            client_tokens: Mutex::new(client_tokens::ClientTokens::default()),
            faults: Mutex::new(VecDeque::new()),
            prefix: options.path_prefix.trim_end_matches('/').to_string(),
        });
        let app = axum::Router::new()
            .route("/__simulator/requests", axum::routing::get(list_requests))
            .route("/__simulator/applied", axum::routing::get(list_applied))
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

    /// Forgets the recorded requests and the applied writes (their count starts again from 0).
    /// Client tokens stay remembered: that is the cloud's state, not a record of it.
    pub fn clear_requests(&self) {
        self.shared.recorded.lock().expect("record lock").clear();
        self.shared.applied.lock().expect("applied lock").clear();
    }

    /// The writes applied so far (as `GET /__simulator/applied` lists them): how many, and the
    /// latest of them, oldest first. A write counts once it took effect, whether or not its
    /// answer reached the caller; a resend turned away by its client token does not.
    pub fn applied(&self) -> AppliedWrites {
        self.shared
            .applied
            .lock()
            .expect("applied lock")
            .snapshot(None)
    }

    /// The kept applied writes of one operation, oldest first.
    pub fn applied_for(&self, operation: &str) -> Vec<AppliedWrite> {
        self.shared
            .applied
            .lock()
            .expect("applied lock")
            .snapshot(Some(operation))
            .writes
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
