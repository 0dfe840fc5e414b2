//! Which connections of the gRPC port have calls open, for `[limits] grpc_max_connection_idle`:
//! the edge counts each call from its start to the end of its answer's body, and
//! `server::incoming` closes a connection that has had no call open for that long. Connections
//! are told apart by their peer's address (one TCP connection per address and port), which
//! every request carries in its extensions.

use futures_util::task::AtomicWaker;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// The open connections, by peer address.
#[derive(Debug, Default)]
pub struct Connections {
    by_peer: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
}

/// One connection's calls.
#[derive(Debug)]
pub struct Activity {
    open: AtomicUsize,
    /// When the last call ended (or the connection opened), as nanoseconds since `base`.
    quiet_since: AtomicU64,
    base: Instant,
    /// The connection's reader, woken when its last call ends.
    reader: AtomicWaker,
}

impl Activity {
    fn new() -> Self {
        Activity {
            open: AtomicUsize::new(0),
            quiet_since: AtomicU64::new(0),
            base: Instant::now(),
            reader: AtomicWaker::new(),
        }
    }

    /// Since when no call is open; `None` while one is (the reader is woken when it ends).
    pub fn quiet_since(&self, cx: &mut Context<'_>) -> Option<Instant> {
        self.reader.register(cx.waker());
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.quiet_since.load(Ordering::Acquire);
        Some(self.base + Duration::from_nanos(nanos))
    }
}

/// A connection's place in [`Connections`], left when dropped.
#[derive(Debug)]
pub struct Registered {
    connections: Arc<Connections>,
    peer: SocketAddr,
    pub activity: Arc<Activity>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut m) = self.connections.by_peer.lock() {
            m.remove(&self.peer);
        }
    }
}

/// One open call; dropping it ends the call.
#[derive(Debug)]
pub struct OpenCall(Arc<Activity>);

impl Drop for OpenCall {
    fn drop(&mut self) {
        let a = &self.0;
        let nanos = u64::try_from(a.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        a.quiet_since.store(nanos, Ordering::Release);
        if a.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.reader.wake();
        }
    }
}

impl Connections {
    /// Registers the connection from `peer`.
    pub fn register(self: &Arc<Self>, peer: SocketAddr) -> Registered {
        let activity = Arc::new(Activity::new());
        if let Ok(mut m) = self.by_peer.lock() {
            m.insert(peer, activity.clone());
        }
        Registered {
            connections: self.clone(),
            peer,
            activity,
        }
    }

    /// A call starts on the connection the request came on (if it is known).
    pub fn call_started<B>(&self, req: &http::Request<B>) -> Option<OpenCall> {
        let ext = req.extensions();
        let peer = ext
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr)
            .or_else(|| {
                ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                    .and_then(|i| i.get_ref().remote_addr())
            })?;
        let activity = self.by_peer.lock().ok()?.get(&peer)?.clone();
        activity.open.fetch_add(1, Ordering::AcqRel);
        Some(OpenCall(activity))
    }
}

/// An answer's body that holds its call open until it is sent or dropped.
pub struct Counted {
    inner: tonic::body::Body,
    _call: OpenCall,
}

impl Counted {
    pub fn body(inner: tonic::body::Body, call: OpenCall) -> tonic::body::Body {
        tonic::body::Body::new(Counted { inner, _call: call })
    }
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
