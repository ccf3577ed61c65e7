//! `forten-demo`: runs EventBoard.
//!
//! - no subcommand: all four services in one process (in-memory bus, or
//!   RabbitMQ with `--amqp`), the walkthrough once against them, then serve
//!   until Ctrl-C / SIGTERM (`--once`: exit after the walkthrough with its status);
//! - `forten-demo gateway|auth|events|notifications`: one service alone; it
//!   registers in the gateway's registry over HTTP (`--registry`);
//! - `forten-demo walkthrough [--gateway URL]`: the walkthrough against a running system.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use forten_discovery::{AnyRegistry, HttpRegistry, MemoryRegistry};
use forten_examples::gateway::{self, GatewayConfig};
use forten_examples::runtime::auth::REGISTRY_KEY_HEADER;
use forten_examples::runtime::{BusConfig, Keys, RunningService, Secrets, ServiceContext};
use forten_examples::system::{RunningSystem, Service, SystemConfig, SystemError};
use forten_examples::walkthrough;

#[derive(Parser, Debug)]
#[command(
    name = "forten-demo",
    version,
    about = "EventBoard, the forten example system"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
    /// All-in-one: exit after the walkthrough (non-zero if it failed).
    #[arg(long)]
    once: bool,
    /// All-in-one: the gateway's port.
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 3000)]
    gateway_port: u16,
    /// All-in-one: auth-service's port.
    #[arg(long, env = "AUTH_PORT", default_value_t = 3001)]
    auth_port: u16,
    /// All-in-one: events-service's port.
    #[arg(long, env = "EVENTS_PORT", default_value_t = 3002)]
    events_port: u16,
    /// All-in-one: notification-service's port.
    #[arg(long, env = "NOTIFICATIONS_PORT", default_value_t = 3003)]
    notifications_port: u16,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// RabbitMQ URL (default: the in-memory bus).
    #[arg(long, env = "AMQP_URL", global = true)]
    amqp: Option<String>,
    /// The address services bind.
    #[arg(long, env = "BIND_HOST", default_value = "127.0.0.1", global = true)]
    host: IpAddr,
    /// HS256 secret of user tokens (at least 32 bytes).
    #[arg(long, env = "USER_TOKEN_SECRET", global = true, hide_env_values = true)]
    user_token_secret: Option<String>,
    /// HS256 secret of service tokens (at least 32 bytes).
    #[arg(
        long,
        env = "SERVICE_TOKEN_SECRET",
        global = true,
        hide_env_values = true
    )]
    service_token_secret: Option<String>,
    /// The key services register in the gateway's registry with (at least 16 bytes).
    #[arg(long, env = "REGISTRY_KEY", global = true, hide_env_values = true)]
    registry_key: Option<String>,
    /// Per-user rate limit, requests per second.
    #[arg(
        long,
        env = "RATE_LIMIT_PER_SECOND",
        default_value_t = 50,
        global = true
    )]
    rate_limit: u32,
    /// Per-user rate limit, burst.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = 100, global = true)]
    burst: u32,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// api-gateway alone (hosts the registry).
    Gateway(One),
    /// auth-service alone.
    Auth(One),
    /// events-service alone.
    Events(One),
    /// notification-service alone.
    Notifications(One),
    /// The walkthrough against a running gateway.
    Walkthrough {
        /// The gateway's base URL.
        #[arg(long, env = "GATEWAY_URL", default_value = "http://127.0.0.1:3000")]
        gateway: String,
    },
}

#[derive(Args, Debug)]
struct One {
    /// The port (default: the service's usual one).
    #[arg(long)]
    port: Option<u16>,
    /// The gateway's registry.
    #[arg(long, env = "REGISTRY_URL", default_value = "http://127.0.0.1:3000")]
    registry: String,
}

fn secrets(common: &Common) -> Secrets {
    let dev = Secrets::dev();
    let secrets = Secrets {
        user_token: common.user_token_secret.clone().unwrap_or(dev.user_token),
        service_token: common
            .service_token_secret
            .clone()
            .unwrap_or(dev.service_token),
        registry_key: common.registry_key.clone().unwrap_or(dev.registry_key),
    };
    if secrets.is_dev() {
        println!(
            "note: using built-in development secrets (dev defaults); set USER_TOKEN_SECRET, \
             SERVICE_TOKEN_SECRET and REGISTRY_KEY for anything real"
        );
    }
    secrets
}

fn bus(common: &Common) -> BusConfig {
    match &common.amqp {
        Some(url) => BusConfig::amqp(url.clone()),
        None => BusConfig::memory(),
    }
}

/// Ctrl-C or SIGTERM.
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

async fn all_in_one(cli: &Cli) -> Result<ExitCode, SystemError> {
    let common = &cli.common;
    let mut config = SystemConfig::demo()
        .rate_limit_per_user(common.rate_limit, common.burst)
        .port(Service::Gateway, cli.gateway_port)
        .port(Service::Auth, cli.auth_port)
        .port(Service::Events, cli.events_port)
        .port(Service::Notifications, cli.notifications_port);
    config.host = common.host;
    config.secrets = secrets(common);
    if let Some(url) = &common.amqp {
        config = config.amqp(url.clone());
    }
    let bus = config.bus.kind();
    let system = RunningSystem::start(config).await?;
    println!("EventBoard is running ({bus} bus):");
    for service in Service::ALL {
        if let Some(url) = system.service_url(service) {
            println!("  {:<22} {url}", service.name());
        }
    }
    let gateway_url = system.gateway_url();
    println!("  registry               {gateway_url}/registry/services");
    println!("  health                 {gateway_url}/health");
    let walked = walkthrough::run(&gateway_url).await;
    let code = match &walked {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walkthrough failed: {e}");
            ExitCode::FAILURE
        }
    };
    if !cli.once {
        println!("serving until Ctrl-C");
        shutdown_signal().await;
        println!("shutting down gracefully");
    }
    system.shutdown().await?;
    Ok(if cli.once { code } else { ExitCode::SUCCESS })
}

async fn one(service: Service, args: &One, common: &Common) -> Result<ExitCode, SystemError> {
    let secrets = secrets(common);
    let keys = Keys::new(&secrets)?;
    let bus = bus(common);
    if matches!(bus, BusConfig::Memory(_)) && service != Service::Gateway {
        println!(
            "note: in-memory bus: events stay inside this process; use --amqp to connect the services"
        );
    }
    let default_port = match service {
        Service::Gateway => 3000,
        Service::Auth => 3001,
        Service::Events => 3002,
        Service::Notifications => 3003,
    };
    let addr = SocketAddr::new(common.host, args.port.unwrap_or(default_port));
    let hosted = MemoryRegistry::builder()
        .health_checks(forten_discovery::HealthCheckConfig::default())
        .build()?;
    let registry = if service == Service::Gateway {
        AnyRegistry::new(hosted.clone())
    } else {
        AnyRegistry::new(
            HttpRegistry::builder(args.registry.clone())
                .header(REGISTRY_KEY_HEADER, secrets.registry_key.clone())
                .build()?,
        )
    };
    let ctx = ServiceContext::new(keys, bus, registry);
    let launch = match service {
        Service::Gateway => {
            let config = GatewayConfig {
                registry: hosted,
                rate_limit: gateway::rate_limit_policy(common.rate_limit, common.burst)?,
                upstream_timeout: std::time::Duration::from_secs(3),
                upstream_total_timeout: std::time::Duration::from_secs(6),
                demo: None,
            };
            gateway::launch(&ctx, &config)?
        }
        Service::Auth => {
            forten_examples::auth::launch(&ctx, forten_examples::auth::AuthStore::default()).await?
        }
        Service::Events => {
            let repo = std::sync::Arc::new(forten_examples::events::MemoryEvents::new());
            forten_examples::events::launch(&ctx, repo).await?
        }
        Service::Notifications => {
            let repo =
                std::sync::Arc::new(forten_examples::notifications::MemoryNotifications::new());
            forten_examples::notifications::launch(&ctx, repo).await?
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| SystemError::Bind {
            service: service.name(),
            addr,
            source,
        })?;
    let running = RunningService::start(launch, listener)
        .await
        .map_err(|source| SystemError::Serve {
            service: service.name(),
            source,
        })?;
    println!("{} on {}", service.name(), running.url());
    if service != Service::Gateway {
        println!("registering at {}", args.registry);
    }
    shutdown_signal().await;
    println!("shutting down gracefully");
    running.stop().await.map_err(|source| SystemError::Serve {
        service: service.name(),
        source,
    })?;
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // info for the forten crates too: their spans carry correlation_id
                "warn,forten_examples=info,forten_core=info,forten_client=info,forten_events=info"
                    .into()
            }),
        )
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        None => all_in_one(&cli).await,
        Some(Command::Gateway(a)) => one(Service::Gateway, a, &cli.common).await,
        Some(Command::Auth(a)) => one(Service::Auth, a, &cli.common).await,
        Some(Command::Events(a)) => one(Service::Events, a, &cli.common).await,
        Some(Command::Notifications(a)) => one(Service::Notifications, a, &cli.common).await,
        Some(Command::Walkthrough { gateway }) => match walkthrough::run(gateway).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                eprintln!("walkthrough failed: {e}");
                Ok(ExitCode::FAILURE)
            }
        },
    };
    result.unwrap_or_else(|e| {
        eprintln!("forten-demo: {e}");
        ExitCode::FAILURE
    })
}
