//! TLS to the upstream: the simulator serves HTTPS with certificates from a test CA; the
//! gateway trusts the built-in roots plus `[upstream] ca_file`, and refuses anything else.

use crate::credentials::ROLE_ARN;
use crate::support::*;
use ack_gateway::secret::Secret;
use ack_gateway::simulator::{Simulator, SimulatorOptions, SimulatorTls};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::Code;

/// A simulator serving HTTPS with `cert` (PEM chain, PEM key).
pub async fn https_simulator(cert: (String, String)) -> Simulator {
    let sim = simulator(SimulatorOptions {
        tls: Some(SimulatorTls {
            cert_chain_pem: cert.0,
            key_pem: Secret::new(cert.1),
        }),
        ..SimulatorOptions::default()
    })
    .await;
    assert!(sim.endpoint().starts_with("https://127.0.0.1:"));
    sim
}

/// Writes `pem` to `name` in a scratch directory named after the test.
pub fn write(test: &str, name: &str, pem: &str) -> PathBuf {
    let path = scratch_dir(&format!("tls-{test}")).join(name);
    std::fs::write(&path, pem).expect("write");
    path
}

/// The gateway against `sim` for CS and STS, with a `default` access-key profile, a `role`
/// profile assuming a role with it, and the CA bundle, if any.
async fn gateway(sim: &Simulator, ca_file: Option<&Path>) -> Harness {
    gateway_with(sim, ca_file, "").await
}

/// [`gateway`], with more `[upstream]` keys.
pub async fn gateway_with(sim: &Simulator, ca_file: Option<&Path>, upstream_keys: &str) -> Harness {
    let (id, secret) = sim.root_key();
    let upstream = match ca_file {
        Some(path) => format!(
            "[upstream]\nca_file = \"{}\"\n{upstream_keys}",
            path.display()
        ),
        None => format!("[upstream]\n{upstream_keys}"),
    };
    let toml = format!(
        r#"
[simulator]
mode = "never"
[auth]
mode = "insecure_local"
{upstream}
[endpoints]
cs = "{ep}"
sts = "{ep}"
[profiles.default]
type = "access_key"
access_key_id = "{id}"
access_key_secret = "{secret}"
region = "cn-hangzhou"
[profiles.role]
type = "ram_role_arn"
source_profile = "default"
role_arn = "{ROLE_ARN}"
region = "cn-hangzhou"
"#,
        ep = sim.endpoint(),
        secret = secret.expose(),
    );
    Harness::with_config(&toml, env(&[])).await
}

/// A certificate for the simulator's loopback address, as the endpoint names it.
pub const LOOPBACK: &[&str] = &["localhost", "127.0.0.1"];

#[tokio::test]
async fn the_private_ca_in_ca_file_makes_the_https_upstream_trusted() {
    let pki = Pki::new();
    let sim = https_simulator(pki.leaf("simulator", LOOPBACK)).await;
    let ca = write("trusted", "ca.pem", &pki.ca_pem);
    let h = gateway(&sim, Some(&ca)).await;

    let (created, _) = h
        .cs(
            "CreateCluster",
            json!({"name": "over-https", "region_id": "cn-hangzhou"}),
        )
        .await
        .expect("a mutation over HTTPS");
    let id = created["cluster_id"].as_str().expect("id");
    let (detail, _) = h
        .cs("DescribeClusterDetail", json!({"cluster_id": id}))
        .await
        .expect("a read over HTTPS");
    assert_eq!(detail["name"], "over-https");
    assert_eq!(sim.requests_for("CreateCluster").len(), 1);
}

#[tokio::test]
async fn assume_role_works_over_https() {
    let pki = Pki::new();
    let sim = https_simulator(pki.leaf("simulator", LOOPBACK)).await;
    let ca = write("sts", "ca.pem", &pki.ca_pem);
    let h = gateway(&sim, Some(&ca)).await;
    h.call(
        CS_SERVICE,
        "DescribeClustersV1",
        json!({}),
        &[("x-ack-profile", "role")],
        None,
    )
    .await
    .expect("a call signed with an assumed role's triple");
    assert!(!sim.requests_for("AssumeRole").is_empty());
    let listed = sim.requests_for("DescribeClustersV1");
    assert!(listed
        .last()
        .expect("listed")
        .headers
        .get("x-acs-accesskey-id")
        .is_some_and(|k| k.starts_with("STS.")));
}

/// Calls a read and a mutation; both must fail with UNAVAILABLE naming TLS and `expected`,
/// quickly (a refused certificate is not retried), and nothing may reach the simulator.
async fn assert_refused(h: &Harness, sim: &Simulator, expected: &[&str]) {
    for (op, req) in [
        ("DescribeClustersV1", json!({})),
        (
            "CreateCluster",
            json!({"name": "never-sent", "region_id": "cn-hangzhou"}),
        ),
    ] {
        let started = Instant::now();
        let err = h.cs(op, req).await.expect_err("certificate refused");
        let took = started.elapsed();
        assert_eq!(err.code(), Code::Unavailable, "{op}: {err:?}");
        assert!(
            err.message().starts_with("TLS: "),
            "{op}: {}",
            err.message()
        );
        for text in expected {
            assert!(err.message().contains(text), "{op}: {}", err.message());
        }
        assert!(took < Duration::from_secs(2), "{op} took {took:?}");
    }
    assert!(sim.requests().is_empty(), "nothing reached the upstream");
}

#[tokio::test]
async fn without_ca_file_a_private_ca_is_not_trusted() {
    let pki = Pki::new();
    let sim = https_simulator(pki.leaf("simulator", LOOPBACK)).await;
    let h = gateway(&sim, None).await;
    assert_refused(
        &h,
        &sim,
        &[
            "the certificate of 127.0.0.1 is not trusted",
            "unknown issuer",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let pki = Pki::new();
    let sim = https_simulator(pki.leaf("elsewhere", &["cs.other.example"])).await;
    let ca = write("mismatch", "ca.pem", &pki.ca_pem);
    let h = gateway(&sim, Some(&ca)).await;
    assert_refused(
        &h,
        &sim,
        &["is not valid for host 127.0.0.1 (it is for cs.other.example)"],
    )
    .await;
}

#[tokio::test]
async fn a_self_signed_certificate_not_in_the_bundle_is_refused() {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(LOOPBACK.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    let cert = params.self_signed(&key).expect("self-signed");
    let sim = https_simulator((cert.pem(), key.serialize_pem())).await;
    let ca = write("self-signed", "ca.pem", &Pki::new().ca_pem);
    let h = gateway(&sim, Some(&ca)).await;
    assert_refused(&h, &sim, &["is not trusted"]).await;
}

#[tokio::test]
async fn https_to_an_endpoint_without_tls_fails_naming_tls() {
    let sim = simulator(SimulatorOptions::default()).await;
    let (id, secret) = sim.root_key();
    let toml = format!(
        "[simulator]\nmode = \"never\"\n[auth]\nmode = \"insecure_local\"\n[endpoints]\ncs = \"https://{addr}\"\n[profiles.default]\ntype = \"access_key\"\naccess_key_id = \"{id}\"\naccess_key_secret = \"{}\"\nregion = \"cn-hangzhou\"\n",
        secret.expose(),
        addr = sim.addr(),
    );
    let h = Harness::with_config(&toml, env(&[])).await;
    let err = h
        .cs("DescribeClustersV1", json!({}))
        .await
        .expect_err("no TLS there");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(
        err.message()
            .starts_with("TLS: the handshake with 127.0.0.1 failed"),
        "{}",
        err.message()
    );
}

#[test]
fn an_unusable_ca_file_stops_start_up_naming_the_key() {
    let load = |path: &Path| {
        let toml = format!("[upstream]\nca_file = \"{}\"\n", path.display());
        ack_gateway::config::Config::load(Some(&toml), &env(&[]))
            .expect_err("refused")
            .to_string()
    };
    let missing = scratch_dir("tls-bad-ca").join("missing.pem");
    let not_pem = write("bad-ca", "notes.txt", "this is not a certificate\n");
    let garbage = write(
        "bad-ca",
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    );
    let der = scratch_dir("tls-bad-ca").join("ca.der");
    std::fs::write(&der, [0x30, 0x82, 0xff, 0xfe, 0x80, 0x81]).expect("write");
    for (path, expected) in [
        (&missing, "cannot read"),
        (&not_pem, "holds no PEM certificate"),
        (&garbage, "certificate 1 of"),
        (&der, "is not PEM text"),
    ] {
        let message = load(path);
        assert!(
            message.contains("upstream.ca_file: ") && message.contains(expected),
            "{}: {message}",
            path.display()
        );
    }
    // A bundle of two CAs is accepted.
    let two = write(
        "bad-ca",
        "two.pem",
        &format!("{}{}", Pki::new().ca_pem, Pki::new().ca_pem),
    );
    let toml = format!("[upstream]\nca_file = \"{}\"\n", two.display());
    let config = ack_gateway::config::Config::load(Some(&toml), &env(&[])).expect("valid");
    assert_eq!(config.upstream.ca.expect("bundle").certs.len(), 2);
}
