//! The `ackgateway.v1.OperationsService` gRPC service: the operations journal, listed and
//! watched. A caller sees its own entries unless granted `journal = "all"`.

use crate::gateway::Gateway;
use crate::proto::gateway::operations_service_server::{
    OperationsService, OperationsServiceServer,
};
use crate::proto::gateway::{
    ListOperationsRequest, ListOperationsResponse, Operation, OperationPhase, OperationsFilter,
    WatchOperationsRequest, WatchOperationsResponse,
};
use crate::translate::InvalidField;
use crate::writes::journal::{Entry, Filter, Phase};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub const SERVICE_NAME: &str = "ackgateway.v1.OperationsService";

/// The default and largest page.
const DEFAULT_PAGE: usize = 50;
const MAX_PAGE: usize = 500;

pub struct OperationsApi {
    gateway: Arc<Gateway>,
    /// A watch sends a heartbeat when nothing else was sent for this long (`[watch]
    /// heartbeat_interval`), so a client can tell a quiet journal from a dead connection.
    heartbeat: Duration,
}

impl OperationsApi {
    pub fn server(
        gateway: Arc<Gateway>,
        heartbeat: Duration,
    ) -> OperationsServiceServer<OperationsApi> {
        OperationsServiceServer::new(OperationsApi { gateway, heartbeat })
    }

    /// Who calls, and the filter they may use: their own entries only, unless granted all.
    fn scope<T>(
        &self,
        request: &Request<T>,
        filter: Option<&OperationsFilter>,
    ) -> Result<(Filter, bool), Status> {
        let caller = super::caller::authenticate(&self.gateway, request)?;
        let mut filter = to_filter(filter)?;
        let own_only = !self.gateway.snapshot().access.sees_all_operations(&caller);
        if own_only {
            if filter.caller.as_ref().is_some_and(|c| *c != caller) {
                return Err(Status::permission_denied(format!(
                    "caller `{caller}` sees only its own operations (a caller with `journal = \"all\"` sees everyone's)"
                )));
            }
            filter.caller = Some(caller);
        }
        Ok((filter, own_only))
    }
}

fn page_size(n: u32) -> usize {
    match n {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}

type OperationsStream = Pin<Box<dyn Stream<Item = Result<WatchOperationsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl OperationsService for OperationsApi {
    async fn list_operations(
        &self,
        request: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let (filter, own_only) = self.scope(&request, request.get_ref().filter.as_ref())?;
        let r = request.into_inner();
        let before = match r.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<u64>().map_err(|_| {
                crate::error::GatewayError::from(InvalidField::new(
                    "page_token",
                    "not a token this service gave",
                ))
                .into_status()
            })?),
        };
        let (entries, next) = self
            .gateway
            .journal()
            .list(&filter, before, page_size(r.page_size))
            .await;
        Ok(Response::new(ListOperationsResponse {
            operations: entries.iter().map(to_proto).collect(),
            next_page_token: next.map(|n| n.to_string()).unwrap_or_default(),
            own_only,
        }))
    }

    type WatchOperationsStream = OperationsStream;

    async fn watch_operations(
        &self,
        request: Request<WatchOperationsRequest>,
    ) -> Result<Response<OperationsStream>, Status> {
        let (filter, own_only) = self.scope(&request, request.get_ref().filter.as_ref())?;
        let r = request.into_inner();
        let journal = self.gateway.journal().clone();
        let heartbeat = self.heartbeat;
        // Subscribed before listing: an entry written in between is sent (perhaps twice, the
        // second time as it is), never lost.
        let mut events = journal.subscribe();
        let existing = if r.include_existing {
            journal.list(&filter, None, page_size(r.page_size)).await.0
        } else {
            Vec::new()
        };
        let stream = async_stream(move |tx| async move {
            for e in existing {
                let item = WatchOperationsResponse {
                    operation: Some(to_proto(&e)),
                    own_only,
                    heartbeat: false,
                };
                if tx.send(Ok(item)).await.is_err() {
                    return;
                }
            }
            loop {
                let event = match tokio::time::timeout(heartbeat, events.recv()).await {
                    Ok(event) => event,
                    Err(_) => {
                        let beat = WatchOperationsResponse {
                            heartbeat: true,
                            own_only,
                            ..WatchOperationsResponse::default()
                        };
                        if tx.send(Ok(beat)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                match event {
                    Ok(e) if filter.matches(&e) => {
                        let item = WatchOperationsResponse {
                            operation: Some(to_proto(&e)),
                            own_only,
                            heartbeat: false,
                        };
                        if tx.send(Ok(item)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "an operations watcher fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a bounded channel (the task ends when the caller goes).
fn async_stream<F, Fut>(f: F) -> OperationsStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<WatchOperationsResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn to_filter(f: Option<&OperationsFilter>) -> Result<Filter, Status> {
    let Some(f) = f else {
        return Ok(Filter::default());
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let time = |field: &str, s: &str| -> Result<Option<u64>, Status> {
        if s.is_empty() {
            return Ok(None);
        }
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                crate::error::GatewayError::from(InvalidField::new(
                    format!("filter.{field}"),
                    format!("not an RFC 3339 time: {e}"),
                ))
                .into_status()
            })?;
        Ok(Some((t.unix_timestamp_nanos() / 1000).max(0) as u64))
    };
    Ok(Filter {
        caller: text(&f.caller),
        cluster_id: text(&f.cluster_id),
        operation: text(&f.operation),
        outcome: text(&f.outcome),
        since_us: time("since", &f.since)?,
        until_us: time("until", &f.until)?,
    })
}

fn to_proto(e: &Entry) -> Operation {
    let started = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.started_us) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    Operation {
        id: e.id.clone(),
        started_at: started,
        duration_ms: e.duration_ms,
        caller: e.caller.clone(),
        profile: e.profile.clone(),
        region: e.region.clone(),
        operation: e.operation.clone(),
        cluster_id: e.cluster_id.clone(),
        nodepool_id: e.nodepool_id.clone(),
        idempotency_key: e.idempotency_key.clone(),
        request_id: e.request_id.clone(),
        task_id: e.task_id.clone(),
        phase: match e.phase {
            Phase::Running => OperationPhase::Running,
            Phase::Queued => OperationPhase::Queued,
            Phase::TaskRunning => OperationPhase::TaskRunning,
            Phase::Succeeded => OperationPhase::Succeeded,
            Phase::Failed => OperationPhase::Failed,
            Phase::Unknown => OperationPhase::Unknown,
        } as i32,
        code: e.code.clone(),
        reason: e.reason.clone(),
        message: e.message.clone(),
        replay: e.replay,
        queued_ms: e.queued_ms,
    }
}
