//! A client in another language (Python grpcio), using only server reflection, drives the
//! gateway. Required under CI (which installs grpcio); elsewhere skipped if grpcio is missing.

use crate::support::Harness;
use std::process::Command;

fn python_has_grpc() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn python_client_uses_reflection_to_create_and_describe_a_cluster() {
    if !python_has_grpc() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install grpcio (see .ci/run)"
        );
        eprintln!("skipped: python3 with grpcio, grpcio-reflection and protobuf is not installed");
        return;
    }
    let h = Harness::embedded().await;
    let addr = h.running.addr.to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(addr)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("alibabacloud.cs.v20151215.ContainerService has 148 methods"),
        "{stdout}"
    );
    assert!(
        stdout.contains("DescribeClusterDetail: from-python cn-hangzhou"),
        "{stdout}"
    );
    assert!(stdout.contains("unknown cluster: NOT_FOUND"), "{stdout}");
    assert!(
        stdout.contains("grpc.health.v1.Health"),
        "health is served: {stdout}"
    );
}
