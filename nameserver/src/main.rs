//! `spillway-nameserver [--listen ADDR] [--broker-timeout-ms N] [--scan-interval-ms N]
//! [--config FILE]`: the name server's command line.
//!
//! Settings come from the defaults, then the TOML file, then the flags. A refused setting
//! prints one line naming the key and exits with status 2; a failed bind exits 1. Once bound
//! it prints `listening on ADDR` to stdout (tests bind port 0 and read it); logs go to
//! stderr (`RUST_LOG`, default `info`). SIGTERM or SIGINT stops it with status 0.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use spillway_nameserver::cli;

/// Spillway's name server: the in-memory directory of brokers and topic routes.
#[derive(Parser, Debug)]
#[command(name = "spillway-nameserver", version)]
struct Command {
    #[command(flatten)]
    arguments: cli::Arguments,
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
    let command = Command::parse();
    cli::run("spillway-nameserver", &command.arguments)
}
