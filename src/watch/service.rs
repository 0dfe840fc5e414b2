//! The `ackgateway.v1.Watch` gRPC service: authenticates the caller as unary calls do, joins the
//! target's poller, waits for its first poll so that an unknown id is NOT_FOUND before any
//! message, and hands the subscriber's stream to the transport.

use super::subscriber::Subscriber;
use super::target::{End, Target};
use super::Watcher;
use crate::gateway::CallContext;
use crate::proto::gateway::watch_server::{Watch, WatchServer};
use crate::proto::gateway::{
    Phase, WatchAddonUpgradeRequest, WatchClusterRequest, WatchClusterUpgradeRequest, WatchEvent,
    WatchTaskRequest,
};
use futures_util::{Stream, StreamExt as _};
use std::pin::Pin;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// A subscriber's stream of messages.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send + 'static>>;

#[derive(Clone)]
pub struct WatchService {
    hub: Arc<Watcher>,
}

impl WatchService {
    pub fn new(hub: Arc<Watcher>) -> Self {
        WatchService { hub }
    }

    pub fn hub(&self) -> &Arc<Watcher> {
        &self.hub
    }

    /// The tonic service to add to the routes.
    pub fn server(self) -> WatchServer<WatchService> {
        WatchServer::new(self)
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
        let stream = Subscriber::new(rx, config, ctx.deadline, still_allowed)
            .into_stream()
            .map(move |item| {
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
impl Watch for WatchService {
    type WatchTaskStream = WatchStream;
    type WatchClusterUpgradeStream = WatchStream;
    type WatchAddonUpgradeStream = WatchStream;
    type WatchClusterStream = WatchStream;

    async fn watch_task(
        &self,
        request: Request<WatchTaskRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let ctx = self.context(&request)?;
        let target = Target::task(&request.get_ref().task_id)?;
        self.open(ctx, target, None).await
    }

    async fn watch_cluster_upgrade(
        &self,
        request: Request<WatchClusterUpgradeRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
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
        }
    }

    async fn watch_addon_upgrade(
        &self,
        request: Request<WatchAddonUpgradeRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        let target = Target::addon_upgrade(&r.cluster_id, &r.addons)?;
        self.open(ctx, target, None).await
    }

    async fn watch_cluster(
        &self,
        request: Request<WatchClusterRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let ctx = self.context(&request)?;
        let r = request.get_ref();
        let target = Target::cluster(&r.cluster_id, &r.target_states)?;
        self.open(ctx, target, None).await
    }
}
