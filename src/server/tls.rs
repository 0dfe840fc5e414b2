//! TLS on the gRPC listener, and the names a client certificate proves (mutual TLS).

use crate::config::access::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use tokio_rustls::rustls;
use tonic::Request;

#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsError(String);

/// The listener's TLS configuration; with a client CA, client certificates are required.
/// ALPN offers HTTP/2 and HTTP/1.1 (gRPC-Web, Connect and the page are served over both).
pub fn server_config(cfg: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| TlsError(format!("{}: {e}", p.display())))
    };
    let certs = |p: &std::path::Path| {
        let certs = CertificateDer::pem_slice_iter(&read(p)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError(format!("{}: {e}", p.display())))?;
        if certs.is_empty() {
            return Err(TlsError(format!(
                "{}: no PEM certificate found",
                p.display()
            )));
        }
        Ok(certs)
    };
    // The key's parse error names the file and the PEM problem, never the key's bytes.
    let key = PrivateKeyDer::from_pem_slice(&read(&cfg.key_file)?)
        .map_err(|e| TlsError(format!("{}: {e}", cfg.key_file.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs(&cfg.cert_file)?, key)
        .map_err(|e| TlsError(format!("{}: {e}", cfg.cert_file.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Subject common names and subject-alternative names (DNS, URI, email) of the client
/// certificate, if the connection presented one.
pub fn peer_names<T>(request: &Request<T>) -> Vec<String> {
    peer_names_in(request.extensions())
}

/// `peer_names` from a request's extensions, where the server records its connection's
/// client certificate (as `tonic::Request::peer_certs` reads it).
pub fn peer_names_in(extensions: &http::Extensions) -> Vec<String> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let Some(certs) = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
    else {
        return Vec::new();
    };
    let Some(leaf) = certs.first() else {
        return Vec::new();
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_string))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n)
                | x509_parser::extensions::GeneralName::URI(n)
                | x509_parser::extensions::GeneralName::RFC822Name(n) => {
                    names.push((*n).to_string())
                }
                _ => {}
            }
        }
    }
    names
}
