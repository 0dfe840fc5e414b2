//! How the simulator is served: HTTP/1.1 over plain TCP or over TLS (tokio-rustls), connection
//! by connection.
//!
//! Not `axum::serve`, because some faults act on the connection rather than on the answer:
//! "close the connection before answering" must close the very socket the request came on,
//! and a handler only sees its request. So each connection puts a [`ConnectionHandle`] into the
//! extensions of its requests, and [`ConnectionHandle::abort`] makes the connection's task drop
//! the hyper connection, which closes the socket at once, whatever hyper has buffered. A body
//! that fails before its first frame would not do: whether hyper has written the status line by
//! then is its own business.

use crate::secret::Secret;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// HTTPS for the simulator: a certificate chain (leaf first) and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct SimulatorTls {
    pub cert_chain_pem: String,
    pub key_pem: Secret,
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handle on the connection a request arrived on (in the request's extensions).
#[derive(Clone, Default)]
pub(super) struct ConnectionHandle {
    abort: Arc<Notify>,
}

impl ConnectionHandle {
    /// Closes the connection now, without writing anything more.
    pub(super) fn abort(&self) {
        self.abort.notify_one();
    }
}

/// The TLS acceptor for `tls`, or why the certificate or key cannot be used.
pub(super) fn acceptor(tls: &SimulatorTls) -> std::io::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
    let certs = CertificateDer::pem_slice_iter(tls.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("simulator TLS certificate: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            "simulator TLS certificate: no PEM certificate found".into(),
        ));
    }
    // The key's parse error names the PEM problem, never the key's bytes.
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.expose().as_bytes()).map_err(|e| {
        invalid(match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "simulator TLS key: no PEM private key found".to_string()
            }
            e => format!("simulator TLS key: {e}"),
        })
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("simulator TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("simulator TLS certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `stop` fires; then stops accepting, asks every open
/// connection to close once its request in flight is answered, and ends when they have.
pub(super) fn spawn(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (closing, closing_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(connection(
                            stream,
                            peer,
                            app.clone(),
                            tls.clone(),
                            closing_rx.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "simulator cannot accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = closing.send(true);
        while connections.join_next().await.is_some() {}
    })
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    tls: Option<TlsAcceptor>,
    closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(TokioIo::new(stream), app, closing).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_io(TokioIo::new(stream), app, closing).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "simulator TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "simulator TLS handshake timed out"),
            }
        }
    }
}

async fn serve_io<I>(io: I, app: Router, mut closing: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let handle = ConnectionHandle::default();
    let aborted = handle.abort.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<_>| {
        req.extensions_mut().insert(handle.clone());
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    let conn = http.serve_connection(io, service);
    tokio::pin!(conn);
    let mut asked_to_close = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "simulator connection closed");
                }
                return;
            }
            // Dropping the connection closes the socket.
            () = aborted.notified() => return,
            _ = closing.changed(), if !asked_to_close => {
                asked_to_close = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
