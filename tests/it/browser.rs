//! The progress page (/ui/) in headless Chromium: tests/browser/progress.mjs drives the gateway
//! binary and a simulator through the operations list (another client's write live, filters,
//! a row opening its task, own entries only, the bound on followed tasks), a node pool view, a
//! task's success and failure, a gateway restart and the token forms. The script bounds its own
//! run (RUN_LIMIT_MS, 220 s; a run takes about 75 s) and prints "N passed, N failed".
//! Required under CI; elsewhere skipped when node, Chromium or playwright-core is missing
//! (`npm ci` in tests/browser installs playwright-core).

use std::path::Path;
use std::process::Command;

#[test]
fn progress_page_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut missing = Vec::new();
    if !node {
        missing.push("node on PATH");
    }
    if !Path::new("/usr/bin/chromium").exists() {
        missing.push("/usr/bin/chromium");
    }
    let playwright = root.join("tests/browser/node_modules/playwright-core");
    if !playwright.exists() {
        missing.push("tests/browser/node_modules/playwright-core (npm ci in tests/browser)");
    }
    if !missing.is_empty() {
        let missing = missing.join(", ");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must provide the browser test's tools: {missing} missing"
        );
        eprintln!("skipping the browser test: {missing} missing");
        return;
    }
    let status = Command::new("node")
        .arg("tests/browser/progress.mjs")
        .current_dir(root)
        .env("ACK_GATEWAY_BIN", env!("CARGO_BIN_EXE_ack-gateway"))
        .status()
        .expect("node runs");
    assert!(status.success(), "the browser test failed: {status}");
}
