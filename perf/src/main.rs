//! `spillway-perf`: Spillway's bundled load generator and benchmarks.
//!
//! Subcommands:
//!
//! * `storage --dir DIR [--bytes N] [--rounds N] [--json]`: how close the storage engine
//!   gets to the raw sequential write speed of the disk under DIR, for 100-byte and 1 KiB
//!   message bodies, with sync and async flush; medians over rounds.
//! * `disk --dir DIR [--bytes N] [--json]`: the disk's own speed under DIR through io_uring
//!   with O_DIRECT (sequential write and read, 4 KiB write + fdatasync latency), the
//!   baseline `perf/scripts/bench_cluster.sh` reports cluster figures against.
//! * `disk-paced --dir DIR --mb-s R [--seconds S] [--json]`: the disk's own
//!   append-to-durable latency with bytes arriving at R MB/s, group-committed by one
//!   writer (O_DIRECT write + fdatasync per group): the floor under end-to-end latency at
//!   that rate.
//!
//! Hidden subcommands, which the local cluster (`spillway_perf::local_cluster`) runs as
//! child processes of this same binary:
//!
//! * `serve-broker --config FILE`: a broker, as `spillway-broker --config FILE`;
//! * `serve-nameserver [--listen ADDR] ...`: a name server, as `spillway-nameserver`.
//!
//! Results go to stdout (a table, or exactly one JSON object with `--json`); logs and errors
//! go to stderr (`RUST_LOG` sets the level, default `info`). The `storage`, `disk` and
//! `disk-paced` modules talk to the storage engine or the disk directly; they know nothing about brokers
//! or the wire.

mod byte_size;
mod disk_baseline;
mod engine_append;
mod error;
mod paced_write;
mod raw_read;
mod raw_write;
mod report;
mod rounds;
mod run_directory;
mod storage_bench;
mod sync_write;

use std::error::Error as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use spillway_perf::drivers::commands;
use spillway_perf::serve::{self, ServeBrokerArguments, ServeNameServerArguments};

use crate::error::PerfError;

/// Spillway's load generator and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "spillway-perf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a local name server and broker, run 10 seconds of producing and consuming,
    /// print the summary, stop everything and clean up.
    Quickstart(commands::QuickstartArgs),
    /// Produce messages (to a local cluster without --name-server).
    Produce(commands::ProduceArgs),
    /// Consume a topic (from the earliest or latest offsets).
    Consume(commands::ConsumeArgs),
    /// Produce and consume at once; end-to-end latency from send to receipt.
    E2e(commands::EndToEndArgs),
    /// Read a topic from the beginning and check it against a `produce --ledger` file;
    /// exits 1 if anything acknowledged is lost, duplicated, corrupted or out of order.
    Verify(commands::VerifyArgs),
    /// Measure the storage engine against raw O_DIRECT sequential writes on one disk.
    Storage(StorageArgs),
    /// Measure the disk itself through io_uring with O_DIRECT: sequential write and read
    /// MB/s, and the latency of a 4 KiB write + fdatasync at queue depth 1.
    Disk(DiskArgs),
    /// The disk's own append-to-durable latency at a byte rate: bytes arrive at --mb-s and
    /// one writer group-commits them (O_DIRECT write + fdatasync per group), as a floor
    /// under a cluster's end-to-end latency at that rate.
    DiskPaced(DiskPacedArgs),
    /// Run a broker from a config file, as `spillway-broker` (for the local cluster).
    #[command(hide = true)]
    ServeBroker(ServeBrokerArguments),
    /// Run a name server, as `spillway-nameserver` (for the local cluster).
    #[command(hide = true)]
    ServeNameserver(ServeNameServerArguments),
}

#[derive(Debug, clap::Args)]
struct StorageArgs {
    /// Directory on the disk to measure (not tmpfs); the run writes into a fresh
    /// subdirectory and removes it at the end.
    #[arg(long)]
    dir: PathBuf,
    /// Bytes written by the raw baseline, and message body (payload) bytes appended by each
    /// engine case, per round; K, M, G suffixes are powers of 1024 (e.g. 512M).
    #[arg(long, default_value = "2G", value_parser = byte_size::parse_byte_size)]
    bytes: u64,
    /// Rounds of the baseline and every case; the report gives medians over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Print exactly one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct DiskArgs {
    /// Directory on the disk to measure (not tmpfs); the run writes into a fresh
    /// subdirectory and removes it at the end.
    #[arg(long)]
    dir: PathBuf,
    /// Bytes written, then read back, sequentially; K, M, G suffixes are powers of 1024
    /// (e.g. 512M).
    #[arg(long, default_value = "1G", value_parser = byte_size::parse_byte_size)]
    bytes: u64,
    /// Print exactly one JSON object on stdout instead of a few lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct DiskPacedArgs {
    /// Directory on the disk to measure (not tmpfs); the run writes into a fresh
    /// subdirectory and removes it at the end.
    #[arg(long)]
    dir: PathBuf,
    /// Arrival rate, in MB/s (10^6 bytes per second).
    #[arg(long)]
    mb_s: f64,
    /// How long bytes arrive, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Print exactly one JSON object on stdout instead of a few lines.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let result = match cli.command {
        Command::Quickstart(args) => commands::quickstart(&args).map_err(PerfError::from),
        Command::Produce(args) => commands::produce(&args).map_err(PerfError::from),
        Command::Consume(args) => commands::consume(&args).map_err(PerfError::from),
        Command::E2e(args) => commands::end_to_end(&args).map_err(PerfError::from),
        Command::Verify(args) => match commands::verify(&args) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(PerfError::from(error)),
        },
        Command::Storage(args) => run_storage(args),
        Command::Disk(args) => run_disk(args),
        Command::DiskPaced(args) => run_disk_paced(args),
        // The servers' own exit statuses (2: refused config, 1: failure).
        Command::ServeBroker(arguments) => return serve::serve_broker(&arguments),
        Command::ServeNameserver(arguments) => return serve::serve_name_server(&arguments),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("spillway-perf: error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                // Our messages usually embed their source already; do not repeat it.
                if !message.contains(&cause_text) {
                    message.push_str(&format!("\n  caused by: {cause_text}"));
                }
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run_storage(args: StorageArgs) -> Result<(), PerfError> {
    let report = storage_bench::run(&args.dir, args.bytes, args.rounds)?;
    print_report(args.json, || report.to_json(), || report.to_table())
}

fn run_disk(args: DiskArgs) -> Result<(), PerfError> {
    let report = disk_baseline::run(&args.dir, args.bytes, disk_baseline::SYNC_WRITES)?;
    print_report(args.json, || report.to_json(), || report.to_text())
}

fn run_disk_paced(args: DiskPacedArgs) -> Result<(), PerfError> {
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        return Err(PerfError::Usage {
            reason: format!("--seconds must be a positive number, not {}", args.seconds),
        });
    }
    let duration = Duration::try_from_secs_f64(args.seconds).map_err(|_| PerfError::Usage {
        reason: format!("--seconds {} is out of range", args.seconds),
    })?;
    let report = paced_write::run(&args.dir, args.mb_s, duration)?;
    print_report(args.json, || report.to_json(), || report.to_text())
}

/// Prints a report on stdout: with `json`, its one JSON object and a newline; else its
/// human form.
fn print_report<E: Into<std::io::Error>>(
    json: bool,
    to_json: impl FnOnce() -> Result<String, E>,
    to_text: impl FnOnce() -> String,
) -> Result<(), PerfError> {
    let output = if json {
        let mut json = to_json()
            .map_err(|error| PerfError::io("serializing the report", "<stdout>", error.into()))?;
        json.push('\n');
        json
    } else {
        to_text()
    };
    std::io::stdout()
        .lock()
        .write_all(output.as_bytes())
        .map_err(|source| PerfError::io("writing the report to", "<stdout>", source))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage_args(extra: &[&str]) -> Result<StorageArgs, clap::Error> {
        let base = ["spillway-perf", "storage", "--dir", "/data"];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        match cli.command {
            Command::Storage(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn rounds_default_to_three_and_must_be_at_least_one() {
        assert_eq!(storage_args(&[]).unwrap().rounds, 3);
        assert_eq!(storage_args(&["--rounds", "1"]).unwrap().rounds, 1);
        assert!(storage_args(&["--rounds", "0"]).is_err());
        assert!(storage_args(&["--rounds", "-1"]).is_err());
    }

    #[test]
    fn bytes_take_binary_suffixes() {
        assert_eq!(storage_args(&["--bytes", "1G"]).unwrap().bytes, 1 << 30);
    }

    fn disk_args(extra: &[&str]) -> Result<DiskArgs, clap::Error> {
        let base = ["spillway-perf", "disk"];
        let cli = Cli::try_parse_from(base.iter().chain(extra))?;
        match cli.command {
            Command::Disk(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn disk_needs_a_dir_and_writes_one_gibibyte_by_default() {
        assert!(disk_args(&[]).is_err());
        let args = disk_args(&["--dir", "/data"]).unwrap();
        assert_eq!(args.dir, PathBuf::from("/data"));
        assert_eq!(args.bytes, 1 << 30);
        assert!(!args.json);
    }

    #[test]
    fn disk_paced_needs_a_dir_and_a_rate_and_runs_ten_seconds_by_default() {
        let parse = |extra: &[&str]| {
            let base = ["spillway-perf", "disk-paced"];
            Cli::try_parse_from(base.iter().chain(extra)).map(|cli| match cli.command {
                Command::DiskPaced(args) => args,
                other => panic!("parsed as {other:?}"),
            })
        };
        assert!(parse(&["--dir", "/data"]).is_err());
        assert!(parse(&["--mb-s", "300"]).is_err());
        let args = parse(&["--dir", "/data", "--mb-s", "300"]).unwrap();
        assert_eq!(args.mb_s, 300.0);
        assert_eq!(args.seconds, 10.0);
        assert!(matches!(
            run_disk_paced(DiskPacedArgs {
                seconds: -1.0,
                ..args
            }),
            Err(PerfError::Usage { .. })
        ));
    }

    #[test]
    fn disk_takes_a_byte_size_and_json() {
        let args = disk_args(&["--dir", "/data", "--bytes", "256M", "--json"]).unwrap();
        assert_eq!(args.bytes, 256 << 20);
        assert!(args.json);
        assert!(disk_args(&["--dir", "/data", "--bytes", "lots"]).is_err());
        assert!(disk_args(&["--dir", "/data", "--rounds", "3"]).is_err());
    }

    #[test]
    fn serve_subcommands_parse_and_stay_out_of_the_help() {
        let cli = Cli::try_parse_from(["spillway-perf", "serve-broker", "--config", "b.toml"]);
        assert!(matches!(
            cli.unwrap().command,
            Command::ServeBroker(ServeBrokerArguments { config }) if config == std::path::Path::new("b.toml")
        ));
        let cli = Cli::try_parse_from([
            "spillway-perf",
            "serve-nameserver",
            "--listen",
            "127.0.0.1:0",
            "--scan-interval-ms",
            "10",
        ]);
        let Command::ServeNameserver(arguments) = cli.unwrap().command else {
            panic!("not serve-nameserver");
        };
        assert_eq!(arguments.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(arguments.scan_interval_ms, Some(10));
        assert_eq!(arguments.broker_timeout_ms, None);
        let help = <Cli as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        assert!(help.contains("storage"), "{help}");
        assert!(help.contains("disk"), "{help}");
        assert!(!help.contains("serve-"), "{help}");
    }
}
