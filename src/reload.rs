//! Hot reload: when the config file or a secret file it names changes, the configuration is
//! parsed again and, if valid, the credentials and access rules are swapped in. Calls in flight
//! keep the snapshot they started with; an invalid new configuration is logged and ignored.

use crate::access::Access;
use crate::config::{Config, Env};
use crate::gateway::{Gateway, Snapshot};
use crate::vault::sts::StsClient;
use crate::vault::Vault;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the files are checked.
pub const DEFAULT_INTERVAL: Duration = crate::config::DEFAULT_RELOAD_INTERVAL;

fn mtimes(files: &[PathBuf]) -> Vec<Option<SystemTime>> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// Watches `config_file` and the files its configuration reads until the gateway is dropped.
pub fn spawn<E: Env + Send + Sync + 'static>(
    gateway: &Arc<Gateway>,
    config_file: PathBuf,
    initial: &Config,
    local: crate::access::LocalAccess,
    env: E,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak = Arc::downgrade(gateway);
    let mut files = vec![config_file.clone()];
    files.extend(initial.watched_files.iter().cloned());
    let simulator_profile = initial.wants_simulator();
    tokio::spawn(async move {
        let mut seen = mtimes(&files);
        loop {
            tokio::time::sleep(interval).await;
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            let now = mtimes(&files);
            if now == seen {
                continue;
            }
            seen = now;
            let text = match std::fs::read_to_string(&config_file) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(file = %config_file.display(), error = %e, "reload: cannot read the config file; keeping the current one");
                    continue;
                }
            };
            match Config::load(Some(&text), &env) {
                Ok(config) => {
                    if simulator_profile {
                        tracing::warn!("reload: ignored while serving the embedded simulator");
                        continue;
                    }
                    let current = gateway.snapshot();
                    let sts = StsClient::new(gateway.upstream().clone(), gateway.table().clone());
                    let vault = Vault::build(
                        config.profiles.values().cloned(),
                        &sts,
                        Some(&current.vault),
                    );
                    // The listener's security does not change at runtime.
                    let access = Access::new(&local, &config.callers)
                        .with_broker_max_duration(config.broker.max_duration);
                    gateway.replace_snapshot(Snapshot { vault, access });
                    files = std::iter::once(config_file.clone())
                        .chain(config.watched_files.iter().cloned())
                        .collect();
                    seen = mtimes(&files);
                    tracing::info!(profiles = ?config.profiles.keys().collect::<Vec<_>>(), callers = config.callers.len(), "configuration reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reload: the new configuration is invalid; keeping the current one")
                }
            }
        }
    })
}
