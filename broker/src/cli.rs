//! The broker's command line, shared by `spillway-broker` and the load generator's local
//! cluster (`spillway-perf serve-broker`), so both read configs and exit the same way:
//! 2 for a refused config (one line naming the key and the reason), 1 when the broker
//! cannot start or stop cleanly (the reason on stderr), 0 after a clean stop on
//! SIGTERM/SIGINT.

use std::path::Path;
use std::process::ExitCode;

use crate::cores::AvailableCores;
use crate::{server, BrokerConfig, ConfigError};

/// Exit status of a refused config.
pub const EXIT_REFUSED: u8 = 2;
/// Exit status of a broker that could not start or stop cleanly.
pub const EXIT_FAILED: u8 = 1;

/// Loads and validates the config at `path` for this machine's cores, or says why not
/// (prefixed with `program`) and gives the exit status.
pub fn load_config(program: &str, path: &Path) -> Result<(BrokerConfig, AvailableCores), ExitCode> {
    let cores = AvailableCores::detect();
    match BrokerConfig::load_for(path, &cores) {
        Ok(config) => Ok((config, cores)),
        Err(error @ (ConfigError::Read { .. } | ConfigError::TooLarge { .. })) => {
            eprintln!("{program}: {error}");
            Err(ExitCode::from(EXIT_REFUSED))
        }
        Err(error) => {
            eprintln!("{program}: invalid config {}: {error}", path.display());
            Err(ExitCode::from(EXIT_REFUSED))
        }
    }
}

/// Runs the broker configured at `path` until SIGTERM/SIGINT.
pub fn serve(program: &str, path: &Path) -> ExitCode {
    let (config, cores) = match load_config(program, path) {
        Ok(loaded) => loaded,
        Err(status) => return status,
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
            eprintln!("{program}: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
