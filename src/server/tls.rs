//! TLS on the gRPC listener, and the names a client certificate proves (mutual TLS).

use crate::config::access::TlsConfig;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::Request;

#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsError(String);

/// The listener's TLS configuration; with a client CA, client certificates are required.
pub fn server_config(cfg: &TlsConfig) -> Result<ServerTlsConfig, TlsError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| TlsError(format!("{}: {e}", p.display())))
    };
    let identity = Identity::from_pem(read(&cfg.cert_file)?, read(&cfg.key_file)?);
    let mut tls = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &cfg.client_ca_file {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// Subject common names and subject-alternative names (DNS, URI, email) of the client
/// certificate, if the connection presented one.
pub fn peer_names<T>(request: &Request<T>) -> Vec<String> {
    let Some(certs) = request.peer_certs() else {
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
