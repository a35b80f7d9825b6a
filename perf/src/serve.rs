//! The servers behind `spillway-perf`'s hidden subcommands, so that
//! [`crate::local_cluster`] can run a name server and a broker as child processes of the
//! `spillway-perf` binary itself, without the `spillway-broker` and `spillway-nameserver`
//! binaries installed beside it.
//!
//! * `serve-broker --config FILE` behaves as `spillway-broker --config FILE`: exit status
//!   2 for a refused config, 1 when the broker cannot start or stop cleanly, 0 after a clean
//!   stop on SIGTERM/SIGINT; `listening on ADDR` on stdout once it serves.
//! * `serve-nameserver [--listen ADDR] [--broker-timeout-ms N] [--scan-interval-ms N]
//!   [--config FILE]` behaves as `spillway-nameserver` with the same flags and statuses.
//!
//! Both go through the servers' libraries (`spillway_broker::server::run`,
//! `spillway_nameserver::server::serve`). The name server's binary keeps its flag parsing,
//! signal flag and executor setup in its `main.rs`, which a library cannot call, so that
//! glue (about thirty lines) is repeated here; keep the two in step. Messages are prefixed
//! with the subcommand so a log says which process wrote it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};
use spillway_broker::cores::AvailableCores;
use spillway_broker::{server, BrokerConfig, ConfigError};
use spillway_nameserver::{ConfigOverrides, NameServerConfig};

/// Exit status of a refused configuration (as the servers' binaries).
pub const EXIT_REFUSED: u8 = 2;
/// Exit status of a server that could not start or stop cleanly (as the servers' binaries).
pub const EXIT_FAILED: u8 = 1;

/// `serve-broker`'s flags.
#[derive(Debug, clap::Args)]
pub struct ServeBrokerArguments {
    /// The broker's config file (TOML, as `spillway-broker --config`).
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
}

/// `serve-nameserver`'s flags: those of `spillway-nameserver`.
#[derive(Debug, clap::Args)]
pub struct ServeNameServerArguments {
    /// Address to listen on (default 127.0.0.1:9876; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Remove a broker silent for this long (default 120000).
    #[arg(long, value_name = "MS")]
    pub broker_timeout_ms: Option<u64>,
    /// Look for silent brokers this often (default 5000).
    #[arg(long, value_name = "MS")]
    pub scan_interval_ms: Option<u64>,
    /// TOML file with the same keys (and max_connections, max_frame_bytes, max_brokers);
    /// flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs a broker from `arguments.config` until SIGTERM/SIGINT (see the module docs).
pub fn serve_broker(arguments: &ServeBrokerArguments) -> ExitCode {
    let path = arguments.config.display();
    let cores = AvailableCores::detect();
    let config = match BrokerConfig::load_for(&arguments.config, &cores) {
        Ok(config) => config,
        Err(error @ (ConfigError::Read { .. } | ConfigError::TooLarge { .. })) => {
            eprintln!("spillway-perf serve-broker: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
        Err(error) => {
            eprintln!("spillway-perf serve-broker: invalid config {path}: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    for warning in config.warnings(&cores) {
        tracing::warn!("{warning}");
    }
    match server::run(config) {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spillway-perf serve-broker: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Runs a name server until SIGTERM/SIGINT (see the module docs).
pub fn serve_name_server(arguments: &ServeNameServerArguments) -> ExitCode {
    let from_file = match &arguments.config {
        Some(path) => match ConfigOverrides::load(path) {
            Ok(overrides) => overrides,
            Err(error) => {
                eprintln!(
                    "spillway-perf serve-nameserver: invalid config {}: {error}",
                    path.display()
                );
                return ExitCode::from(EXIT_REFUSED);
            }
        },
        None => ConfigOverrides::default(),
    };
    let from_flags = ConfigOverrides {
        listen: arguments.listen,
        broker_timeout_ms: arguments.broker_timeout_ms,
        scan_interval_ms: arguments.scan_interval_ms,
        ..ConfigOverrides::default()
    };
    let config = match NameServerConfig::resolve(from_file.overridden_by(from_flags)) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("spillway-perf serve-nameserver: invalid configuration: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, shutdown.clone()) {
            eprintln!("spillway-perf serve-nameserver: cannot handle signal {signal}: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    }
    let executor = match LocalExecutorBuilder::new(Placement::Unbound)
        .name("nameserver")
        .make()
    {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("spillway-perf serve-nameserver: cannot start the executor: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let listen = config.listen;
    match executor.run(spillway_nameserver::server::serve(config, shutdown)) {
        Ok(()) => {
            tracing::info!("name server stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spillway-perf serve-nameserver: cannot serve on {listen}: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
