//! `spillway-broker --config broker.toml [--check]`: the broker's command line.
//!
//! Today it loads and validates the config: on a problem it prints one line naming the key
//! and the reason and exits with status 2; with `--check` it prints a summary (shards,
//! topics, `queue -> shard` layout) and exits 0. The server is not built yet: without
//! `--check` it says so and exits 2, rather than pretending to serve.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spillway_broker::cores::AvailableCores;
use spillway_broker::{summary, BrokerConfig, ConfigError};

/// Exit status of a refused config or a request the binary cannot serve yet.
const EXIT_REFUSED: u8 = 2;

/// Spillway's thread-per-core message broker.
#[derive(Parser, Debug)]
#[command(name = "spillway-broker", version)]
struct Arguments {
    /// The broker's config file (TOML; broker/broker.example.toml documents every key).
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// Validate the config, print a summary of shards, topics and the queue -> shard
    /// layout, and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
    let path = arguments.config.display();

    let cores = AvailableCores::detect();
    let config = match BrokerConfig::load_for(&arguments.config, &cores) {
        Ok(config) => config,
        Err(error @ (ConfigError::Read { .. } | ConfigError::TooLarge { .. })) => {
            eprintln!("spillway-broker: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
        Err(error) => {
            eprintln!("spillway-broker: invalid config {path}: {error}");
            return ExitCode::from(EXIT_REFUSED);
        }
    };

    if arguments.check {
        println!("{path}: valid");
        print!("{}", summary::summary(&config, &cores));
        return ExitCode::SUCCESS;
    }
    for warning in config.warnings(&cores) {
        tracing::warn!("{warning}");
    }
    eprintln!(
        "spillway-broker: {path} is valid, but the broker server is not built yet: it arrives \
         with the cluster issue. Nothing was started. Use --check to validate a config."
    );
    ExitCode::from(EXIT_REFUSED)
}
