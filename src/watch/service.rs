//! The `ackgateway.v1.WatchService` gRPC service: authenticates the caller as unary calls do, joins the
//! target's poller, waits for its first poll so that an unknown id is NOT_FOUND before any
//! message, and hands the subscriber's stream to the transport.

use super::subscriber::{EventFilter, Subscriber};
use super::target::{End, Target};
use super::Watcher;
use crate::gateway::CallContext;
use crate::proto::gateway::watch_service_server::{WatchService, WatchServiceServer};
use crate::proto::gateway::{
    Phase, WaitForRequest, WaitForResponse, WatchAddonUpgradeRequest, WatchAddonUpgradeResponse,
    WatchClusterEventsRequest, WatchClusterEventsResponse, WatchClusterRequest,
    WatchClusterResponse, WatchClusterUpgradeRequest, WatchClusterUpgradeResponse, WatchEvent,
    WatchNodePoolRequest, WatchNodePoolResponse, WatchTaskRequest, WatchTaskResponse,
};
use futures_util::{Stream, StreamExt as _};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// A subscriber's stream of messages, as one RPC's response type.
pub type WatchStream<T = WatchEvent> =
    Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A stream of `WatchEvent`s as an RPC's own response type (the same fields).
fn typed<T: From<WatchEvent> + 'static>(
    opened: Result<Response<WatchStream>, Status>,
) -> Result<Response<WatchStream<T>>, Status> {
    opened.map(|response| {
        response.map(|stream| -> WatchStream<T> { Box::pin(stream.map(|item| item.map(T::from))) })
    })
}

/// The watch RPCs over the hub.
#[derive(Clone)]
pub struct WatchApi {
    hub: Arc<Watcher>,
}

impl WatchApi {
    pub fn new(hub: Arc<Watcher>) -> Self {
        WatchApi { hub }
    }

    pub fn hub(&self) -> &Arc<Watcher> {
        &self.hub
    }

    /// The tonic service to add to the routes.
    pub fn server(self) -> WatchServiceServer<WatchApi> {
        WatchServiceServer::new(self)
    }

    fn context<T>(&self, request: &Request<T>) -> Result<CallContext, Status> {
        let mut ctx = crate::server::call_context(request.metadata())?;
        ctx.caller = crate::server::authenticate(&self.hub.gateway, request)?;
        Ok(ctx)
    }

    /// Subscribes and waits for the first poll. `belongs_to` checks a followed task is the
    /// named cluster's.
    async fn open(
        &self,
        ctx: CallContext,
        target: Target,
        belongs_to: Option<&str>,
    ) -> Result<Response<WatchStream>, Status> {
        self.open_filtered(ctx, target, belongs_to, None).await
    }

    /// `open`, sending only the events `filter` keeps.
    async fn open_filtered(
        &self,
        ctx: CallContext,
        target: Target,
        belongs_to: Option<&str>,
        filter: Option<EventFilter>,
    ) -> Result<Response<WatchStream>, Status> {
        // Held by the stream: its place in the caller's count until the stream is dropped.
        let slot = self.hub.admit(&ctx.caller)?;
        let config = self.hub.config();
        let limit = ctx
            .deadline
            .map_or(config.max_duration, |d| d.min(config.max_duration));
        let still_allowed = self.hub.still_allowed(&ctx, &target);
        let mut rx = self.hub.subscribe(&ctx, target)?;
        let first = match tokio::time::timeout(limit, rx.wait_for(|s| s.polled)).await {
            Err(_) => {
                return Err(Status::deadline_exceeded(
                    "the deadline passed before the first poll answered",
                ))
            }
            Ok(Err(_)) => return Err(Status::unavailable("the watch's poller stopped")),
            Ok(Ok(first)) => first.clone(),
        };
        if let Some(End::Poll(status)) = &first.end {
            if first.status.phase == Phase::Pending as i32 {
                return Err(status.clone());
            }
        }
        if let Some(cluster) = belongs_to {
            match first.status.attributes.get("cluster_id") {
                Some(owner) if owner != cluster => {
                    return Err(Status::invalid_argument(format!(
                        "task {} belongs to cluster {owner}, not {cluster}",
                        first.status.target_id
                    )))
                }
                _ => {}
            }
        }
        let mut subscriber = Subscriber::new(rx, config, ctx.deadline, still_allowed);
        if let Some(filter) = filter {
            subscriber = subscriber.with_filter(filter);
        }
        let stream = subscriber.into_stream().map(move |item| {
            let _held = &slot;
            item
        });
        Ok(Response::new(until_closed(
            Box::pin(stream),
            Box::pin(self.hub.closed()),
        )))
    }
}

/// The stream until the gateway shuts down; then UNAVAILABLE, so that clients reconnect.
fn until_closed(
    stream: WatchStream,
    closed: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> WatchStream {
    let state = (stream, closed, false);
    Box::pin(futures_util::stream::unfold(
        state,
        |(mut stream, mut closed, done)| async move {
            if done {
                return None;
            }
            tokio::select! {
                biased;
                item = stream.next() => item.map(|item| (item, (stream, closed, false))),
                () = &mut closed => Some((
                    Err(Status::unavailable("the gateway is shutting down: reconnect")),
                    (stream, closed, true),
                )),
            }
        },
    ))
}

#[tonic::async_trait]
impl WatchService for WatchApi {
    type WatchTaskStream = WatchStream<WatchTaskResponse>;
    type WatchClusterUpgradeStream = WatchStream<WatchClusterUpgradeResponse>;
    type WatchAddonUpgradeStream = WatchStream<WatchAddonUpgradeResponse>;
    type WatchClusterStream = WatchStream<WatchClusterResponse>;
    type WatchNodePoolStream = WatchStream<WatchNodePoolResponse>;
    type WaitForStream = WatchStream<WaitForResponse>;
    type WatchClusterEventsStream = WatchStream<WatchClusterEventsResponse>;

    async fn watch_task(
        &self,
        request: Request<WatchTaskRequest>,
    ) -> Result<Response<Self::WatchTaskStream>, Status> {
        let ctx = self.context(&request)?;
        let target = Target::task(&request.get_ref().task_id)?;
        typed(self.open(ctx, target, None).await)
    }

    async fn watch_cluster_upgrade(
        &self,
        request: Request<WatchClusterUpgradeRequest>,
    ) -> Result<Response<Self::WatchClusterUpgradeStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        typed(
            match r.task_id.as_deref().filter(|t| !t.trim().is_empty()) {
                // GetUpgradeStatus is deprecated upstream in favour of the task.
                Some(task) => {
                    let cluster = Target::cluster_upgrade(&r.cluster_id)?;
                    self.open(ctx, Target::task(task)?, Some(cluster.id()))
                        .await
                }
                None => {
                    let target = Target::cluster_upgrade(&r.cluster_id)?;
                    self.open(ctx, target, None).await
                }
            },
        )
    }

    async fn watch_addon_upgrade(
        &self,
        request: Request<WatchAddonUpgradeRequest>,
    ) -> Result<Response<Self::WatchAddonUpgradeStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        let target = Target::addon_upgrade(&r.cluster_id, &r.addons)?;
        typed(self.open(ctx, target, None).await)
    }

    async fn watch_cluster(
        &self,
        request: Request<WatchClusterRequest>,
    ) -> Result<Response<Self::WatchClusterStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        let target = Target::cluster(&r.cluster_id, &r.target_states)?;
        typed(self.open(ctx, target, None).await)
    }

    async fn watch_node_pool(
        &self,
        request: Request<WatchNodePoolRequest>,
    ) -> Result<Response<Self::WatchNodePoolStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        let target = Target::nodepool(&r.cluster_id, &r.nodepool_id, &r.target_states)?;
        typed(self.open(ctx, target, None).await)
    }

    async fn wait_for(
        &self,
        request: Request<WaitForRequest>,
    ) -> Result<Response<Self::WaitForStream>, Status> {
        let mut ctx = self.context(&request)?;
        let r = request.get_ref();
        let spec = super::wait::WaitSpec::new(self.hub.gateway.table(), r)?;
        if let Some(timeout) = &r.timeout {
            let timeout = std::time::Duration::try_from(*timeout).map_err(|_| {
                crate::error::GatewayError::from(crate::translate::InvalidField::new(
                    "timeout",
                    "a duration of zero or more",
                ))
                .into_status()
            })?;
            ctx.deadline = Some(ctx.deadline.map_or(timeout, |d| d.min(timeout)));
        }
        typed(self.open(ctx, Target::Wait(Box::new(spec)), None).await)
    }

    async fn watch_cluster_events(
        &self,
        request: Request<WatchClusterEventsRequest>,
    ) -> Result<Response<Self::WatchClusterEventsStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        let target = Target::cluster_events(&r.cluster_id)?;
        let mut levels = Vec::new();
        for level in &r.levels {
            let level = level.trim().to_ascii_lowercase();
            if !["info", "warning", "error"].contains(&level.as_str()) {
                return Err(
                    crate::error::GatewayError::from(crate::translate::InvalidField::new(
                        "levels",
                        format!("`{level}` is not a level: info, warning or error"),
                    ))
                    .into_status(),
                );
            }
            levels.push(level);
        }
        let since = match &r.since {
            None => None,
            Some(t) => Some(std::time::SystemTime::try_from(*t).map_err(|_| {
                crate::error::GatewayError::from(crate::translate::InvalidField::new(
                    "since",
                    "not a valid time",
                ))
                .into_status()
            })?),
        };
        let filter = EventFilter { levels, since };
        typed(self.open_filtered(ctx, target, None, Some(filter)).await)
    }
}
