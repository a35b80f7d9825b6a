//! `spillway-broker --config broker.toml [--check]`: the broker's command line.
//!
//! It loads and validates the config: on a problem it prints one line naming the key and
//! the reason and exits with status 2; with `--check` it prints a summary (shards, topics,
//! `queue -> shard` layout) and exits 0. Otherwise it runs the broker ([`server::run`])
//! until SIGTERM or SIGINT and exits 0 after a clean stop, 1 if it could not start or stop
//! cleanly (the reason on stderr).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spillway_broker::{cli, summary};

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

    if !arguments.check {
        return cli::serve("spillway-broker", &arguments.config);
    }
    let (config, cores) = match cli::load_config("spillway-broker", &arguments.config) {
        Ok(loaded) => loaded,
        Err(status) => return status,
    };
    println!("{path}: valid");
    print!("{}", summary::summary(&config, &cores));
    ExitCode::SUCCESS
}
