//! A real `redis-server` on a free loopback port, killed on drop. Tests that need one skip
//! with a printed notice when the program is missing, and fail under CI (`CI=true`), where
//! `.ci/run` installs it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct RedisServer {
    child: Child,
    port: u16,
}

/// What to do when `redis-server` is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenMissing {
    /// Print a notice and return `None` (outside CI); under `CI=true`, panic.
    SkipOutsideCi,
    /// Return `None` quietly (benchmarks report it themselves).
    Skip,
}

impl RedisServer {
    /// A server on a free port; `None` when the program is missing (see `WhenMissing`).
    pub fn start(missing: WhenMissing) -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port, missing)
    }

    /// A server on `port` (a restart on the port a killed one had).
    pub fn start_on(port: u16, missing: WhenMissing) -> Option<RedisServer> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if missing == WhenMissing::SkipOutsideCi {
                    assert!(
                        std::env::var("CI").as_deref() != Ok("true"),
                        "CI must provide redis-server: {e}"
                    );
                    eprintln!("skipping: redis-server is not installed ({e})");
                }
                return None;
            }
        };
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Kills the server (SIGKILL) and returns its port, for a restart on it.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A stopped server is continued first, so that it can be killed.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
