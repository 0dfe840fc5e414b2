//! The `ack-gateway` binary: parses the command line, initialises logging, and hands over to the
//! library.

use ack_gateway::cli::{Cli, Command, ServeArgs, SimulatorArgs};
use ack_gateway::config::{Config, ProcessEnv};
use ack_gateway::{app, simulator, telemetry};
use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = match telemetry::init() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ack-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => {
            let args = ServeArgs {
                config: args.config.or(cli.serve.config),
                listen: args.listen.or(cli.serve.listen),
            };
            serve(args).await
        }
        Some(Command::Simulator(args)) => run_simulator(args).await,
        Some(Command::CheckConfig) => check_config(&cli.serve),
        Some(Command::Watch(args)) => ack_gateway::cli::watch::run(&args)
            .await
            .map_err(Into::into),
    };
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ack-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &ServeArgs) -> Result<Config, app::BoxError> {
    let text = match &args.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut config = Config::load(text.as_deref(), &ProcessEnv)?;
    config.source_file = args.config.clone();
    if let Some(listen) = args.listen {
        config.listen = listen;
        let problems = config.auth_problems();
        if !problems.is_empty() {
            return Err(ack_gateway::config::ConfigError(problems).into());
        }
    }
    Ok(config)
}

async fn serve(args: ServeArgs) -> Result<(), app::BoxError> {
    let config = load_config(&args)?;
    let mut running = app::start(config).await?;
    if let Some(sim) = &running.simulator {
        println!(
            "ack-gateway: serving gRPC on {} against the embedded ACK simulator at {} (profile `default`, region {}).",
            running.addr,
            sim.endpoint(),
            simulator::DEFAULT_REGION
        );
        println!("  List the API:   grpcurl -plaintext {} list", running.addr);
        println!(
            "  Call it:        grpcurl -plaintext -d '{{\"name\":\"demo\",\"region_id\":\"cn-hangzhou\",\"cluster_type\":\"ManagedKubernetes\"}}' {} alibabacloud.cs.v20151215.ContainerService/CreateCluster",
            running.addr
        );
        println!(
            "  Or with curl:   curl -H 'content-type: application/json' -d '{{\"name\":\"demo\",\"region_id\":\"cn-hangzhou\",\"cluster_type\":\"ManagedKubernetes\"}}' http://{}/alibabacloud.cs.v20151215.ContainerService/CreateCluster",
            running.addr
        );
        println!("  Follow work:    http://{}/ui/", running.addr);
        println!("  Configure real credentials with ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET or --config.");
    } else {
        println!("ack-gateway: serving gRPC on {}", running.addr);
    }
    if running.gateway.snapshot().access.insecure_local() {
        println!("ack-gateway: AUTHENTICATION IS OFF: every caller is `local` and may call everything ([auth] mode, README \"Callers\").");
    }
    if let Some(token) = &running.local_token {
        // Printed once, to the terminal that started the gateway; never logged.
        let (addr, token) = (running.addr, token.expose());
        println!("ack-gateway: no callers are configured, so this gateway accepts one local token (caller `local`), generated for this run:");
        println!("  Progress page:  http://{addr}/ui/#token={token}");
        println!(
            "  gRPC:           grpcurl -plaintext -H 'authorization: Bearer {token}' {addr} list"
        );
        println!("  curl:           curl -H 'authorization: Bearer {token}' -H 'content-type: application/json' -d '{{}}' http://{addr}/alibabacloud.cs.v20151215.ContainerService/DescribeClustersV1");
        println!("  Configure [callers] (see the README) to choose your own tokens.");
    }
    tokio::select! {
        result = running.wait() => result,
        () = shutdown_signal() => {
            tracing::info!("shutting down: draining in-flight calls");
            running.shutdown().await
        }
    }
}

async fn run_simulator(args: SimulatorArgs) -> Result<(), app::BoxError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let keys = match (
        env(ack_gateway::config::env::ACCESS_KEY_ID),
        env(ack_gateway::config::env::ACCESS_KEY_SECRET),
    ) {
        (Some(id), Some(secret)) => vec![(
            id,
            ack_gateway::secret::Secret::new(secret),
            simulator::DEFAULT_ACCOUNT.to_string(),
        )],
        _ => Vec::new(),
    };
    let generated = keys.is_empty();
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(simulator::SimulatorTls {
            cert_chain_pem: read(cert)?,
            key_pem: ack_gateway::secret::Secret::new(read(key)?),
        }),
        _ => None,
    };
    let sim = simulator::Simulator::start(simulator::SimulatorOptions {
        listen: args.listen,
        task_duration: std::time::Duration::from_secs(args.task_seconds),
        keys,
        tls,
        ..Default::default()
    })
    .await?;
    println!(
        "ack-gateway simulator: serving the ACK API at {}",
        sim.endpoint()
    );
    if generated {
        // A throwaway key that only this simulator process accepts.
        let (id, secret) = sim.root_key();
        println!("  simulator-only AccessKey: ALIBABA_CLOUD_ACCESS_KEY_ID={id} ALIBABA_CLOUD_ACCESS_KEY_SECRET={}", secret.expose());
    }
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

fn check_config(args: &ServeArgs) -> Result<(), app::BoxError> {
    use std::io::Write as _;
    let config = load_config(args)?;
    // A reader that stops early (`check-config | head`) is not an error.
    match write!(std::io::stdout().lock(), "{}", config.summary()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
