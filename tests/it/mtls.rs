//! Mutual TLS: a caller is named by its client certificate; an unknown certificate is refused.

use crate::support::*;
use ack_gateway::simulator::SimulatorOptions;
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

async fn client(
    addr: std::net::SocketAddr,
    pki: &Pki,
    cert: &(String, String),
) -> Result<Channel, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(&cert.0, &cert.1))
        .domain_name("localhost");
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test]
async fn client_certificates_name_callers() {
    let pki = Pki::new();
    let other_pki = Pki::new();
    let dir = std::env::temp_dir().join(format!("ackgw-mtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (server_cert, server_key) = pki.leaf("gateway", &["localhost"]);
    for (name, text) in [
        ("server.pem", &server_cert),
        ("server.key", &server_key),
        ("ca.pem", &pki.ca_pem),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let toml = format!(
        r#"
[simulator]
mode = "never"
[auth]
mode = "enforce"
[auth.tls]
cert_file = "{dir}/server.pem"
key_file = "{dir}/server.key"
client_ca_file = "{dir}/ca.pem"
[endpoints]
cs = "{ep}"
[profiles.default]
type = "access_key"
access_key_id = "{id}"
access_key_secret = "{secret}"
region = "cn-hangzhou"
[limits]
grpc_handshake_timeout = "500ms"
[callers.deployer]
tls_names = ["deployer.platform.svc"]
profiles = ["default"]
operations = ["*"]
"#,
        dir = dir.display(),
        ep = sim.endpoint(),
        secret = secret.expose()
    );
    let mut config = ack_gateway::config::Config::load(Some(&toml), &env(&[])).expect("valid");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let running = ack_gateway::app::start(config).await.expect("starts");

    // Named by a SAN.
    let deployer = pki.leaf("deployer", &["deployer.platform.svc"]);
    let channel = client(running.addr, &pki, &deployer)
        .await
        .expect("TLS handshake");
    call(
        &channel,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[],
        None,
    )
    .await
    .expect("the deployer may call");

    // A valid certificate that names no caller is refused.
    let stranger = pki.leaf("stranger", &["stranger.svc"]);
    let channel = client(running.addr, &pki, &stranger)
        .await
        .expect("TLS handshake");
    let err = call(
        &channel,
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[],
        None,
    )
    .await
    .expect_err("unknown caller");
    assert_eq!(err.code(), Code::Unauthenticated);

    // A certificate from another CA does not even connect (or fails the first call).
    let foreign = other_pki.leaf("deployer", &["deployer.platform.svc"]);
    if let Ok(channel) = client(running.addr, &pki, &foreign).await {
        let err = call(
            &channel,
            CS_SERVICE,
            "DescribeClustersV1",
            json!({}),
            &[],
            None,
        )
        .await
        .expect_err("foreign CA refused");
        assert_ne!(err.code(), Code::Ok);
    }

    // A connection that stalls its TLS handshake, or finishes it and then sends nothing, is
    // closed once the handshake timeout has passed.
    let since = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connects");
    let closed = closed_within(&mut silent, std::time::Duration::from_secs(5)).await;
    eprintln!("silent TCP connection closed after {:?}", since.elapsed());
    assert!(closed, "a stalled handshake is dropped");
    assert!(since.elapsed() >= std::time::Duration::from_millis(400));
    let since = std::time::Instant::now();
    let mut quiet = tls_only(running.addr, &pki, &deployer).await;
    let closed = closed_within(&mut quiet, std::time::Duration::from_secs(5)).await;
    eprintln!(
        "TLS connection that sent nothing after its handshake closed after {:?}",
        since.elapsed()
    );
    assert!(closed, "a silent TLS connection is dropped");
    assert!(since.elapsed() >= std::time::Duration::from_millis(400));
    running.shutdown().await.expect("shutdown");
}

/// A TLS connection (ALPN h2, the client certificate `cert`) that sends nothing after its
/// handshake.
async fn tls_only(
    addr: std::net::SocketAddr,
    pki: &Pki,
    cert: &(String, String),
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("CA"))
        .expect("root");
    let chain = CertificateDer::pem_slice_iter(cert.0.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client cert");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// Whether the peer closes the connection within `within` (reading and dropping what it sends).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: std::time::Duration,
) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 512];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}
