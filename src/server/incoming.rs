//! The gRPC port's accepted connections, before HTTP sees them: at most
//! `[limits] grpc_max_connections` open at once (a connection over it is closed as soon as it is
//! accepted), and each one has `grpc_handshake_timeout` from the moment it was accepted to finish
//! its TLS handshake (when the port serves TLS) and send its first 24 bytes: the HTTP/2 preface,
//! or the start of an HTTP/1 request. A connection that does not is closed, so connections that
//! open and then say nothing cannot pile up and exhaust the process's file descriptors. After
//! those first bytes HTTP's own limits take over: HTTP/1's header read timeout, and HTTP/2's
//! keepalive pings; and, with `grpc_max_connection_idle`, a connection that has had no call open
//! for that long (the edge counts its calls, `edge::activity`) is closed.
//!
//! TLS is done here (tokio-rustls, with the configuration `tls::server_config` builds) rather
//! than by tonic, so that the handshake counts in the same deadline; tonic still sees a
//! `tokio_rustls` stream and records the client's certificate for `Request::peer_certs`.

use super::http1_framing::Http1Framing;
use crate::edge::activity::{Connections, Registered};
use crate::listener::accept_within;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::rustls;
use tonic::transport::server::Connected;

/// The bytes a connection must send within the handshake timeout: the length of the HTTP/2
/// client preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`); an HTTP/1 request line with its `Host`
/// header is longer.
pub const FIRST_BYTES: usize = 24;

/// What the accept loop grants connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// Connections open at once from one peer address.
    pub max_per_peer: usize,
    pub handshake_timeout: Duration,
    /// With the connections' calls counted: how long one may stay without any.
    pub idle: Option<(Duration, Arc<Connections>)>,
}

/// An accepted connection: it holds its place among the open connections until it is dropped,
/// and fails its reads once its handshake deadline passes before its first bytes arrived, or
/// once it has had no call open for the idle timeout.
pub struct Guarded<T> {
    inner: T,
    /// Which HTTP the connection speaks, and for HTTP/1 where its heads are (`http1_framing`).
    protocol: Sniffed,
    /// Until the first bytes arrived: the deadline, and how many arrived so far.
    first_bytes: Option<(Pin<Box<Sleep>>, usize)>,
    idle: Option<Idle>,
    _slot: OwnedSemaphorePermit,
    _peer: PeerSlot,
}

/// Open connections by peer address.
type Peers = Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>;

/// One connection's place among its peer address's: given back when it is dropped.
pub struct PeerSlot {
    peers: Peers,
    ip: IpAddr,
}

impl PeerSlot {
    /// A place for a connection from `ip`, if it has fewer than `max` open.
    fn take(peers: &Peers, ip: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut open = peers.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: peers.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The protocol of a connection, told by its first bytes.
enum Sniffed {
    /// Fewer than 4 bytes seen so far.
    Undecided(Vec<u8>),
    /// HTTP/1: its request heads must end their lines in CRLF.
    Http1(Box<Http1Framing>),
    /// The HTTP/2 preface (`PRI * HTTP/2.0…`): hyper's HTTP/2 framing takes over.
    Http2,
}

impl Sniffed {
    /// Follows the bytes the client sent.
    fn feed(&mut self, bytes: &[u8]) -> io::Result<()> {
        let refused = |e: super::http1_framing::Refused| {
            crate::metrics::malformed_http1();
            io::Error::new(io::ErrorKind::InvalidData, e.to_string())
        };
        match self {
            Sniffed::Http2 => Ok(()),
            Sniffed::Http1(framing) => framing.feed(bytes).map_err(refused),
            Sniffed::Undecided(seen) => {
                seen.extend_from_slice(bytes);
                if seen.len() < 4 {
                    return Ok(());
                }
                if seen.starts_with(b"PRI ") {
                    *self = Sniffed::Http2;
                    return Ok(());
                }
                let mut framing = Box::<Http1Framing>::default();
                let result = framing.feed(seen).map_err(refused);
                *self = Sniffed::Http1(framing);
                result
            }
        }
    }
}

/// The idle timeout of one connection.
struct Idle {
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    registered: Registered,
}

impl Idle {
    /// Whether the connection has had no call open for the timeout (arming the timer, or the
    /// end of its last call, to wake the reader when it might have).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let Some(since) = self.registered.activity.quiet_since(cx) else {
                return false;
            };
            let deadline = Instant::from_std(since) + self.timeout;
            if deadline <= Instant::now() {
                return true;
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

impl<T> Guarded<T> {
    fn new(
        inner: T,
        deadline: Instant,
        (slot, peer): (OwnedSemaphorePermit, PeerSlot),
        idle: Option<(Duration, Registered)>,
    ) -> Self {
        Guarded {
            inner,
            protocol: Sniffed::Undecided(Vec::with_capacity(4)),
            first_bytes: Some((Box::pin(tokio::time::sleep_until(deadline)), 0)),
            idle: idle.map(|(timeout, registered)| Idle {
                timeout,
                timer: Box::pin(tokio::time::sleep(timeout)),
                registered,
            }),
            _slot: slot,
            _peer: peer,
        }
    }
}

fn timed_out() -> io::Error {
    crate::metrics::handshake_timed_out();
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the connection did not send its first bytes within the handshake timeout",
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.protocol.feed(&buf.filled()[before..])?;
        }
        if read.is_pending() && this.idle.as_mut().is_some_and(|i| i.expired(cx)) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connection had no call open for the idle timeout",
            )));
        }
        let Some((deadline, received)) = &mut this.first_bytes else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                *received += got;
                if *received >= FIRST_BYTES || got == 0 {
                    // Enough to go on, or the end of the stream: nothing left to time.
                    this.first_bytes = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(timed_out())),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for Guarded<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// The accepted connections, as tonic's server takes them.
pub type Incoming<T> = tokio_stream::wrappers::ReceiverStream<io::Result<Guarded<T>>>;

/// Accepts plain TCP connections on `listener` (`TCP_NODELAY` set).
pub fn plain(listener: TcpListener, limits: ConnectionLimits) -> Incoming<TcpStream> {
    accept(listener, limits, |tcp| async move { Ok(tcp) })
}

/// Accepts TLS connections on `listener`, the handshake within the connection's deadline.
pub fn tls(
    listener: TcpListener,
    limits: ConnectionLimits,
    config: Arc<rustls::ServerConfig>,
) -> Incoming<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    accept(listener, limits, move |tcp| acceptor.clone().accept(tcp))
}

/// The accept loop, in a task of its own: it ends, and the listening socket closes, as soon as
/// the server stops taking connections (the stream is dropped on shutdown).
fn accept<T, F, Fut>(listener: TcpListener, limits: ConnectionLimits, handshake: F) -> Incoming<T>
where
    T: Send + 'static,
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = io::Result<T>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let peers = Peers::default();
        loop {
            let accepting = accept_within(
                &listener,
                &slots,
                "gRPC",
                crate::metrics::connection_refused,
            );
            let (tcp, slot) = tokio::select! {
                _ = tx.closed() => return,
                accepted = accepting => accepted,
            };
            let Some(peer) = tcp
                .peer_addr()
                .ok()
                .and_then(|addr| PeerSlot::take(&peers, addr.ip(), limits.max_per_peer))
            else {
                crate::metrics::peer_connection_refused();
                tracing::debug!("gRPC connection refused: its peer address has too many open");
                continue;
            };
            // Without TCP_NODELAY small unary answers wait for delayed ACKs (~40 ms per call).
            let _ = tcp.set_nodelay(true);
            let deadline = Instant::now() + limits.handshake_timeout;
            let idle = match (&limits.idle, tcp.peer_addr()) {
                (Some((timeout, connections)), Ok(peer)) => {
                    Some((*timeout, connections.register(peer)))
                }
                _ => None,
            };
            let (tx, shaking) = (tx.clone(), handshake(tcp));
            tokio::spawn(async move {
                match tokio::time::timeout_at(deadline, shaking).await {
                    Ok(Ok(io)) => {
                        let _ = tx
                            .send(Ok(Guarded::new(io, deadline, (slot, peer), idle)))
                            .await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "gRPC connection: TLS handshake failed")
                    }
                    Err(_) => {
                        crate::metrics::handshake_timed_out();
                        tracing::debug!("gRPC connection: TLS handshake timed out");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
