//! Writes waiting for a busy cluster (`x-ack-when-busy: wait`): one FIFO queue per cluster.
//! The write at the head waits for the cluster to be `running` again, is sent again, and leaves;
//! the next one's turn comes. On one replica the queue is a fair mutex; with Redis, replicas
//! also take turns through a shared list of tickets, each expiring with its caller's deadline
//! (a replica that dies holding the head does not block the queue past it).

use crate::shared::Shared;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a queued write learns that its cluster is running again: the watch hub's shared
/// cluster pollers, given to the gateway when the process is put together (the request path
/// sits below the hub and never names it).
pub trait ClusterStates: Send + Sync {
    /// Resolves when the cluster is `running`; an error (the cluster failed, was deleted or
    /// cannot be read) says why it will not be.
    fn until_running<'a>(
        &'a self,
        profile: &'a str,
        region: &'a str,
        cluster_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;
}

/// How often a write waiting for its turn on another replica asks again.
const TURN_POLL: Duration = Duration::from_millis(100);

/// The queues, by cluster (account, region and cluster id).
pub struct BusyQueues {
    local: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    shared: Option<Arc<Shared>>,
    /// Writes waiting now, on this replica.
    waiting: AtomicUsize,
}

/// A write's turn: it alone may send to its cluster until dropped.
pub struct Turn {
    _local: tokio::sync::OwnedMutexGuard<()>,
    shared: Option<(Arc<Shared>, String, String)>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some((shared, queue, ticket)) = self.shared.take() {
            tokio::spawn(async move {
                if let Err(e) = shared.queue_leave(&[&queue], &ticket).await {
                    tracing::debug!(error = %e, "could not leave a busy-cluster queue (its ticket expires by itself)");
                }
            });
        }
    }
}

impl BusyQueues {
    pub fn new(shared: Option<Arc<Shared>>) -> BusyQueues {
        BusyQueues {
            local: Mutex::new(HashMap::new()),
            shared,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Writes waiting for a turn or for their cluster, on this replica.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Counts a write as waiting until the guard drops.
    pub fn wait(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(&self.waiting)
    }

    /// Waits for the write's turn in `cluster`'s queue, until `deadline`; `None` when the
    /// deadline came first.
    pub async fn turn(&self, cluster: &str, deadline: Instant) -> Option<Turn> {
        let mutex = {
            let mut local = self.local.lock().expect("queues lock");
            // Queues nobody holds or waits for go.
            local.retain(|_, m| Arc::strong_count(m) > 1);
            local
                .entry(cluster.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        };
        let guard = tokio::time::timeout_at(deadline.into(), mutex.lock_owned())
            .await
            .ok()?;
        let Some(shared) = &self.shared else {
            return Some(Turn {
                _local: guard,
                shared: None,
            });
        };
        let expires = crate::writes::unix_ms()
            + deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
        let ticket = format!("{}:{expires}", uuid::Uuid::new_v4().simple());
        let ttl = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(60);
        loop {
            match shared.queue_turn(&[cluster], &ticket, ttl).await {
                Ok(true) => break,
                Ok(false) => {}
                // Redis away: this replica's own queue is what is left.
                Err(e) => {
                    tracing::debug!(error = %e, "busy-cluster queue kept on this replica");
                    return Some(Turn {
                        _local: guard,
                        shared: None,
                    });
                }
            }
            if Instant::now() + TURN_POLL >= deadline {
                let _ = shared.queue_leave(&[cluster], &ticket).await;
                return None;
            }
            tokio::time::sleep(TURN_POLL).await;
        }
        Some(Turn {
            _local: guard,
            shared: Some((shared.clone(), cluster.to_string(), ticket)),
        })
    }
}

/// A write counted as waiting.
pub struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn turns_come_in_order_one_at_a_time() {
        let queues = Arc::new(BusyQueues::new(None));
        let deadline = Instant::now() + Duration::from_secs(5);
        let first = queues.turn("c1", deadline).await.expect("first");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..3 {
            let (queues, order) = (queues.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _turn = queues.turn("c1", deadline).await.expect("turn");
                order.lock().expect("order").push(i);
            }));
            // Each joins the queue before the next.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Another cluster is not held up.
        assert!(queues.turn("c2", deadline).await.is_some());
        // Nobody passes the holder; its deadline bounds a waiter.
        assert!(queues
            .turn("c1", Instant::now() + Duration::from_millis(50))
            .await
            .is_none());
        assert!(order.lock().expect("order").is_empty());
        drop(first);
        for w in waiters {
            w.await.expect("waiter");
        }
        assert_eq!(*order.lock().expect("order"), [0, 1, 2]);
    }
}
