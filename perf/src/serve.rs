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
//! Both call the same library functions as the servers' own binaries
//! (`spillway_broker::cli::serve`, `spillway_nameserver::cli::run`); messages are prefixed
//! with the subcommand so a log says which process wrote it.

use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status of a refused configuration (as the servers' binaries).
pub const EXIT_REFUSED: u8 = spillway_broker::cli::EXIT_REFUSED;
/// Exit status of a server that could not start or stop cleanly (as the servers' binaries).
pub const EXIT_FAILED: u8 = spillway_broker::cli::EXIT_FAILED;

const _: () = assert!(
    EXIT_REFUSED == spillway_nameserver::cli::EXIT_REFUSED
        && EXIT_FAILED == spillway_nameserver::cli::EXIT_FAILED
);

/// `serve-broker`'s flags.
#[derive(Debug, clap::Args)]
pub struct ServeBrokerArguments {
    /// The broker's config file (TOML, as `spillway-broker --config`).
    #[arg(long, value_name = "PATH")]
    pub config: PathBuf,
}

/// `serve-nameserver`'s flags: those of `spillway-nameserver`.
pub type ServeNameServerArguments = spillway_nameserver::cli::Arguments;

/// Runs a broker from `arguments.config` until SIGTERM/SIGINT (see the module docs).
pub fn serve_broker(arguments: &ServeBrokerArguments) -> ExitCode {
    spillway_broker::cli::serve("spillway-perf serve-broker", &arguments.config)
}

/// Runs a name server until SIGTERM/SIGINT (see the module docs).
pub fn serve_name_server(arguments: &ServeNameServerArguments) -> ExitCode {
    spillway_nameserver::cli::run("spillway-perf serve-nameserver", arguments)
}
