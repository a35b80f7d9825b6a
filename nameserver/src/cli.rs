//! The name server's command line, shared by `spillway-nameserver` and the load
//! generator's local cluster (`spillway-perf serve-nameserver`), so both take the same
//! flags and exit with the same statuses.
//!
//! Settings come from the defaults, then the TOML file, then the flags. A refused setting
//! prints one line naming the key and exits with status 2; a failed bind exits 1. Once bound
//! the server prints `listening on ADDR` to stdout. SIGTERM or SIGINT stops it with status 0.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use glommio::{LocalExecutorBuilder, Placement};

use crate::{server, ConfigOverrides, NameServerConfig};

/// Exit status of a refused configuration.
pub const EXIT_REFUSED: u8 = 2;
/// Exit status when the server cannot start (bind, executor).
pub const EXIT_FAILED: u8 = 1;

/// Spillway's name server: the in-memory directory of brokers and topic routes.
#[derive(clap::Args, Debug, Clone)]
pub struct Arguments {
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

/// Runs a name server with `arguments` until SIGTERM/SIGINT; `program` prefixes messages.
pub fn run(program: &str, arguments: &Arguments) -> ExitCode {
    let from_file = match &arguments.config {
        Some(path) => match ConfigOverrides::load(path) {
            Ok(overrides) => overrides,
            Err(error) => {
                eprintln!("{program}: invalid config {}: {error}", path.display());
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
            eprintln!("{program}: invalid configuration: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, shutdown.clone()) {
            eprintln!("{program}: cannot handle signal {signal}: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    }

    let executor = match LocalExecutorBuilder::new(Placement::Unbound)
        .name("nameserver")
        .make()
    {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("{program}: cannot start the executor: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let listen = config.listen;
    match executor.run(server::serve(config, shutdown)) {
        Ok(()) => {
            tracing::info!("name server stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{program}: cannot serve on {listen}: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
