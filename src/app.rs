//! The composition root: builds the vault, the upstream client and the gateway from the
//! configuration, starts the embedded simulator when no credentials are configured, and serves
//! gRPC until shutdown.

use crate::access::Access;
use crate::config::{Config, CredentialConfig, ProfileConfig, DEFAULT_PROFILE};
use crate::gateway::{Gateway, Snapshot};
use crate::simulator::{Simulator, SimulatorOptions, DEFAULT_REGION};
use crate::upstream::Upstream;
use crate::vault::sts::StsClient;
use crate::vault::Vault;
use crate::{server, table};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running gateway (and its simulator, when embedded).
pub struct Running {
    pub addr: SocketAddr,
    /// The credentials-URI HTTP endpoint's address, when configured.
    pub broker_addr: Option<SocketAddr>,
    /// The admin HTTP listener's address: `/metrics`, `/healthz`, `/readyz`.
    pub admin_addr: SocketAddr,
    pub gateway: Arc<Gateway>,
    /// The watchers' hub (pollers and their counters).
    pub watcher: Arc<crate::watch::Watcher>,
    pub simulator: Option<Simulator>,
    /// The generated local token, in local-token mode (`access::LocalMode::Token`): the one
    /// credential callers may present.
    pub local_token: Option<crate::secret::Secret>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Starts serving; returns once the listener is bound.
pub async fn start(mut config: Config) -> Result<Running, BoxError> {
    let table = table::builtin();
    // Decided before the simulator's profile is added to the configuration.
    let local_mode = config.local_mode();
    let local_token = (local_mode == crate::access::LocalMode::Token).then(generate_token);
    let local = match (&local_token, local_mode) {
        (Some(token), _) => {
            crate::access::LocalAccess::Token(crate::access::token_hash(token.expose()))
        }
        (None, crate::access::LocalMode::Insecure) => crate::access::LocalAccess::Insecure,
        (None, _) => crate::access::LocalAccess::Off,
    };
    let config_for_reload = config.clone();

    let simulator = if config.wants_simulator() {
        let sim = Simulator::start(SimulatorOptions {
            listen: config.simulator.listen,
            task_duration: config.simulator.task_duration,
            ..SimulatorOptions::default()
        })
        .await?;
        point_at_simulator(&mut config, &sim);
        Some(sim)
    } else {
        None
    };

    let upstream = Upstream::new(&config.upstream, config.endpoints.clone())?;
    let sts = StsClient::new(upstream.clone(), table.clone());
    let snapshot = Snapshot {
        vault: Vault::build(config.profiles.values().cloned(), &sts, None),
        access: Access::new(&local, &config.callers)
            .with_broker_max_duration(config.broker.max_duration),
    };
    if snapshot.access.insecure_local() {
        tracing::warn!(
            listen = %config.listen,
            "caller authentication is OFF (insecure local mode): every call is served as caller `local`, allowed everything"
        );
    }
    if local == crate::access::LocalAccess::Off && config.callers.is_empty() {
        tracing::warn!("caller authentication is enforced and no callers are configured: every call will be refused");
    }
    // With `[redis]`, replicas share budgets, cache invalidations and pollers.
    let shared = config
        .redis
        .as_ref()
        .map(crate::shared::Shared::new)
        .transpose()?;
    let gateway = Arc::new(Gateway::new(
        table,
        snapshot,
        upstream,
        crate::gateway::Settings {
            request_timeout: config.upstream.request_timeout,
            limits: config.limits.request,
            traffic: &config.traffic,
            writes: &config.writes,
        },
        shared.clone(),
    ));
    if let Some(shared) = &shared {
        let (invalidate, clear) = (Arc::downgrade(&gateway), Arc::downgrade(&gateway));
        shared.spawn(
            move |tags| {
                if let Some(g) = invalidate.upgrade() {
                    g.cache().invalidate_local(tags);
                }
            },
            move || {
                if let Some(g) = clear.upgrade() {
                    g.cache().clear();
                }
            },
        );
    }
    let broker = crate::broker::Broker::new(gateway.clone());
    let watch = crate::watch::WatchApi::new(crate::watch::Watcher::new(
        gateway.clone(),
        config.watch.clone(),
    ));
    let watcher = watch.hub().clone();
    // The journal learns how each write's task ended; queued writes, when their cluster runs.
    if config.writes.journal_follow_tasks {
        crate::watch::follow::journal_tasks(watcher.clone());
    }
    gateway.set_cluster_states(Arc::new(crate::watch::follow::HubClusterStates(
        Arc::downgrade(&watcher),
    )));
    let (routes, health) = server::routes(gateway.clone(), config.limits.max_request_bytes).await?;
    for name in [crate::watch::SERVICE_NAME, server::operations::SERVICE_NAME] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let routes = routes
        .add_service(watch.server())
        .add_service(server::operations::OperationsApi::server(
            gateway.clone(),
            config.watch.heartbeat_interval,
        ))
        .add_service(broker.grpc());
    // Kubernetes probes gRPC health: the API services are SERVING while the vault can sign.
    let table = gateway.table();
    let api_services = table
        .table
        .services
        .keys()
        .filter_map(|key| table.grpc_service_name(key))
        .collect();
    crate::admin::spawn_readiness(
        &gateway,
        health,
        api_services,
        crate::admin::READINESS_INTERVAL,
    );
    let admin_addr = crate::listener::serve(
        config.admin_listen,
        crate::admin::router(gateway.clone(), watcher.clone()),
        config.limits.http,
    )
    .await?;
    let broker_addr = match config.broker.listen {
        Some(addr) => {
            Some(crate::listener::serve(addr, broker.http_router(), config.limits.http).await?)
        }
        None => None,
    };
    if let Some(file) = &config.source_file {
        crate::reload::spawn(
            &gateway,
            file.clone(),
            &config_for_reload,
            local.clone(),
            crate::config::ProcessEnv,
            config.reload_interval,
        );
    }
    let tls = config
        .auth
        .tls
        .as_ref()
        .map(server::tls::server_config)
        .transpose()?;

    let listener = server::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let edge = crate::edge::EdgeConfig {
        max_request_bytes: config.limits.max_request_bytes,
        max_header_list_bytes: config.limits.grpc.max_header_list_bytes as usize,
        cors_origins: config.http.cors_origins.clone(),
        body_timeout: Some(crate::edge::BodyTimeout {
            timeout: config.limits.grpc.request_body_timeout,
            min_rate: config.limits.grpc.request_body_min_rate,
        }),
        authenticate: Some(server::edge_authenticator(gateway.clone())),
        compression: crate::edge::Compression {
            min_bytes: config.http.compress_min_bytes,
            max_message_bytes: config.limits.max_request_bytes,
        },
    };
    let closing = watcher.clone();
    let task = tokio::spawn(server::serve(
        listener,
        routes,
        edge,
        tls,
        config.limits.grpc,
        async move {
            let _ = stopped.await;
            // Streams that would outlive a drain end now, telling their clients to reconnect.
            closing.close();
        },
    ));
    tracing::info!(%addr, %admin_addr, profiles = ?config.profiles.keys().collect::<Vec<_>>(), "gateway listening");
    Ok(Running {
        addr,
        broker_addr,
        admin_addr,
        gateway,
        watcher,
        simulator,
        local_token,
        stop: Some(stop),
        task,
    })
}

/// A fresh random bearer token: 32 bytes, base64url without padding.
fn generate_token() -> crate::secret::Secret {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    crate::secret::Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The `default` profile and every endpoint that is not configured point at the simulator.
fn point_at_simulator(config: &mut Config, sim: &Simulator) {
    let (id, secret) = sim.root_key();
    config.profiles.insert(
        DEFAULT_PROFILE.to_string(),
        ProfileConfig {
            name: DEFAULT_PROFILE.to_string(),
            credential: CredentialConfig::AccessKey {
                access_key_id: id,
                access_key_secret: secret,
            },
            region: Some(DEFAULT_REGION.to_string()),
            acs_headers: BTreeMap::new(),
            signature: config.simulator.signature,
            when_busy: None,
        },
    );
    let endpoint = url::Url::parse(&sim.endpoint()).expect("the simulator's endpoint is a URL");
    for key in ["cs", "sts", "ehpc"] {
        config
            .endpoints
            .entry(key.to_string())
            .or_insert_with(|| endpoint.clone());
    }
}

// === impl Running ===

impl Running {
    /// Stops accepting calls, drains in-flight ones, then stops the simulator.
    pub async fn shutdown(mut self) -> Result<(), BoxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        if let Some(sim) = self.simulator.take() {
            sim.shutdown().await;
        }
        Ok(())
    }

    /// Waits until the server stops by itself (it only does on error).
    pub async fn wait(&mut self) -> Result<(), BoxError> {
        (&mut self.task).await??;
        Ok(())
    }
}
