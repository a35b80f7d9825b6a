//! [`NameServerConfig`]: the name server's settings, from defaults, an optional TOML file
//! and command-line flags (flags win), validated whole before anything starts.
//!
//! The file uses the same keys as the flags (`listen`, `broker_timeout_ms`,
//! `scan_interval_ms`, `max_connections`, `max_frame_bytes`, `max_brokers`); an unknown
//! key is an error that names it. This module reads the file it is given and nothing else:
//! no sockets, no clock.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use spillway_wire::{ABSOLUTE_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES};

/// Default listen address (RocketMQ's name server port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9876";
/// Default silence after which a broker is forgotten.
pub const DEFAULT_BROKER_TIMEOUT_MS: u64 = 120_000;
/// Default period of the expiry scan.
pub const DEFAULT_SCAN_INTERVAL_MS: u64 = 5_000;
/// Default limit on open connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default limit on a frame; a registration of thousands of topics fits easily.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 << 20;
/// Default limit on registered brokers.
pub const DEFAULT_MAX_BROKERS: usize = 4096;
/// Largest config file read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

const _: () = assert!(DEFAULT_MAX_FRAME_BYTES >= MIN_MAX_FRAME_BYTES);
const _: () = assert!(DEFAULT_MAX_FRAME_BYTES <= ABSOLUTE_MAX_FRAME_BYTES);
const _: () = assert!(DEFAULT_SCAN_INTERVAL_MS <= DEFAULT_BROKER_TIMEOUT_MS);

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`].
    #[error("the config file {path} is {bytes} bytes, more than {MAX_CONFIG_FILE_BYTES}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The file is not valid TOML for these keys (unknown key, wrong type).
    #[error("{key}: {reason}")]
    Parse {
        /// The key path (`.` for the whole document).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The settings, every field optional: the file's contents, or the flags given.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverrides {
    /// `listen`: address to bind.
    pub listen: Option<SocketAddr>,
    /// `broker_timeout_ms`: silence after which a broker is removed.
    pub broker_timeout_ms: Option<u64>,
    /// `scan_interval_ms`: how often silent brokers are looked for.
    pub scan_interval_ms: Option<u64>,
    /// `max_connections`: open connections at most.
    pub max_connections: Option<usize>,
    /// `max_frame_bytes`: largest frame accepted, length prefix included.
    pub max_frame_bytes: Option<usize>,
    /// `max_brokers`: registered brokers at most.
    pub max_brokers: Option<usize>,
}

impl ConfigOverrides {
    /// Parses a TOML document; unknown keys and wrong types name their key.
    pub fn from_toml_str(text: &str) -> Result<ConfigOverrides, ConfigError> {
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
            let key = error.path().to_string();
            let reason = error.into_inner().message().replace('\n', " ");
            ConfigError::Parse {
                key,
                reason: reason.trim().to_owned(),
            }
        })
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<ConfigOverrides, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(read_error)?.len();
        if bytes > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                bytes,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        ConfigOverrides::from_toml_str(&text)
    }

    /// These settings, with every one `other` sets replaced by `other`'s.
    pub fn overridden_by(self, other: ConfigOverrides) -> ConfigOverrides {
        ConfigOverrides {
            listen: other.listen.or(self.listen),
            broker_timeout_ms: other.broker_timeout_ms.or(self.broker_timeout_ms),
            scan_interval_ms: other.scan_interval_ms.or(self.scan_interval_ms),
            max_connections: other.max_connections.or(self.max_connections),
            max_frame_bytes: other.max_frame_bytes.or(self.max_frame_bytes),
            max_brokers: other.max_brokers.or(self.max_brokers),
        }
    }
}

/// The validated settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameServerConfig {
    /// Address to bind (port 0: any free port; the bound address is printed).
    pub listen: SocketAddr,
    /// Silence after which a broker is removed.
    pub broker_timeout_ms: u64,
    /// How often silent brokers are looked for.
    pub scan_interval_ms: u64,
    /// Open connections at most; more are answered `ServiceUnavailable` and closed.
    pub max_connections: usize,
    /// Largest frame accepted, length prefix included.
    pub max_frame_bytes: usize,
    /// Registered brokers at most.
    pub max_brokers: usize,
}

impl NameServerConfig {
    /// Defaults with `overrides` applied, validated.
    pub fn resolve(overrides: ConfigOverrides) -> Result<NameServerConfig, ConfigError> {
        let listen = match overrides.listen {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                key: "listen",
                reason: format!("default {DEFAULT_LISTEN} does not parse"),
            })?,
        };
        let config = NameServerConfig {
            listen,
            broker_timeout_ms: overrides
                .broker_timeout_ms
                .unwrap_or(DEFAULT_BROKER_TIMEOUT_MS),
            scan_interval_ms: overrides
                .scan_interval_ms
                .unwrap_or(DEFAULT_SCAN_INTERVAL_MS),
            max_connections: overrides.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_frame_bytes: overrides.max_frame_bytes.unwrap_or(DEFAULT_MAX_FRAME_BYTES),
            max_brokers: overrides.max_brokers.unwrap_or(DEFAULT_MAX_BROKERS),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        if self.broker_timeout_ms == 0 {
            return invalid("broker_timeout_ms", "must be at least 1".into());
        }
        if self.scan_interval_ms == 0 {
            return invalid("scan_interval_ms", "must be at least 1".into());
        }
        if self.scan_interval_ms > self.broker_timeout_ms {
            return invalid(
                "scan_interval_ms",
                format!(
                    "{} is longer than broker_timeout_ms ({}): silent brokers would linger",
                    self.scan_interval_ms, self.broker_timeout_ms
                ),
            );
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1".into());
        }
        if !(MIN_MAX_FRAME_BYTES..=ABSOLUTE_MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return invalid(
                "max_frame_bytes",
                format!(
                    "{} is outside {MIN_MAX_FRAME_BYTES}..={ABSOLUTE_MAX_FRAME_BYTES}",
                    self.max_frame_bytes
                ),
            );
        }
        if self.max_brokers == 0 {
            return invalid("max_brokers", "must be at least 1".into());
        }
        Ok(())
    }

    /// [`NameServerConfig::broker_timeout_ms`] as a duration.
    pub fn broker_timeout(&self) -> Duration {
        Duration::from_millis(self.broker_timeout_ms)
    }

    /// [`NameServerConfig::scan_interval_ms`] as a duration.
    pub fn scan_interval(&self) -> Duration {
        Duration::from_millis(self.scan_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_issue() {
        let config = NameServerConfig::resolve(ConfigOverrides::default()).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9876");
        assert_eq!(config.broker_timeout_ms, 120_000);
        assert_eq!(config.scan_interval_ms, 5_000);
    }

    #[test]
    fn file_keys_parse_and_flags_override_them() {
        let file = ConfigOverrides::from_toml_str(
            "listen = \"127.0.0.1:0\"\nbroker_timeout_ms = 300\nscan_interval_ms = 50\n\
             max_connections = 8\nmax_frame_bytes = 65536\nmax_brokers = 3\n",
        )
        .unwrap();
        let flags = ConfigOverrides {
            scan_interval_ms: Some(20),
            ..ConfigOverrides::default()
        };
        let config = NameServerConfig::resolve(file.overridden_by(flags)).unwrap();
        assert_eq!(
            config,
            NameServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                broker_timeout_ms: 300,
                scan_interval_ms: 20,
                max_connections: 8,
                max_frame_bytes: 65536,
                max_brokers: 3,
            }
        );
    }

    #[test]
    fn unknown_key_and_wrong_type_name_the_key() {
        let error = ConfigOverrides::from_toml_str("broker_timeout = 5\n").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("broker_timeout"), "{message}");
        assert!(message.contains("unknown field"), "{message}");

        let error = ConfigOverrides::from_toml_str("scan_interval_ms = \"soon\"\n").unwrap_err();
        assert!(
            error.to_string().starts_with("scan_interval_ms:"),
            "{error}"
        );
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_key() {
        let cases = [
            (
                ConfigOverrides {
                    broker_timeout_ms: Some(0),
                    scan_interval_ms: Some(0),
                    ..Default::default()
                },
                "broker_timeout_ms",
            ),
            (
                ConfigOverrides {
                    broker_timeout_ms: Some(100),
                    scan_interval_ms: Some(200),
                    ..Default::default()
                },
                "scan_interval_ms",
            ),
            (
                ConfigOverrides {
                    max_frame_bytes: Some(16),
                    ..Default::default()
                },
                "max_frame_bytes",
            ),
            (
                ConfigOverrides {
                    max_connections: Some(0),
                    ..Default::default()
                },
                "max_connections",
            ),
            (
                ConfigOverrides {
                    max_brokers: Some(0),
                    ..Default::default()
                },
                "max_brokers",
            ),
        ];
        for (overrides, key) in cases {
            let error = NameServerConfig::resolve(overrides).unwrap_err();
            assert!(error.to_string().starts_with(key), "{error}");
        }
    }
}
