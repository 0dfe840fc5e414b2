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
    running.shutdown().await.expect("shutdown");
}
