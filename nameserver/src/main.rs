//! `spillway-nameserver [--listen ADDR] [--broker-timeout-ms N] [--scan-interval-ms N]
//! [--config FILE]`: the name server's command line.
//!
//! Settings come from the defaults, then the TOML file, then the flags. A refused setting
//! prints one line naming the key and exits with status 2; a failed bind exits 1. Once bound
//! it prints `listening on ADDR` to stdout (tests bind port 0 and read it); logs go to
//! stderr (`RUST_LOG`, default `info`). SIGTERM or SIGINT stops it with status 0.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};
use spillway_nameserver::{server, ConfigOverrides, NameServerConfig};

/// Exit status of a refused configuration.
const EXIT_REFUSED: u8 = 2;
/// Exit status when the server cannot start (bind, executor).
const EXIT_FAILED: u8 = 1;

/// Spillway's name server: the in-memory directory of brokers and topic routes.
#[derive(Parser, Debug)]
#[command(name = "spillway-nameserver", version)]
struct Arguments {
    /// Address to listen on (default 127.0.0.1:9876; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Remove a broker silent for this long (default 120000).
    #[arg(long, value_name = "MS")]
    broker_timeout_ms: Option<u64>,
    /// Look for silent brokers this often (default 5000).
    #[arg(long, value_name = "MS")]
    scan_interval_ms: Option<u64>,
    /// TOML file with the same keys (and max_connections, max_frame_bytes, max_brokers);
    /// flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let arguments = Arguments::parse();

    let from_file = match &arguments.config {
        Some(path) => match ConfigOverrides::load(path) {
            Ok(overrides) => overrides,
            Err(error) => {
                eprintln!(
                    "spillway-nameserver: invalid config {}: {error}",
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
            eprintln!("spillway-nameserver: invalid configuration: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, shutdown.clone()) {
            eprintln!("spillway-nameserver: cannot handle signal {signal}: {error}");
            return ExitCode::from(EXIT_FAILED);
        }
    }

    let executor = match LocalExecutorBuilder::new(Placement::Unbound)
        .name("nameserver")
        .make()
    {
        Ok(executor) => executor,
        Err(error) => {
            eprintln!("spillway-nameserver: cannot start the executor: {error}");
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
            eprintln!("spillway-nameserver: cannot serve on {listen}: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
