//! [`BrokerConfig`]: the broker's configuration file, its checks, and the two things every
//! shard derives from it: its [`StorageConfig`] and the `queue -> shard` mapping.
//!
//! # How a file becomes a config
//!
//! 1. **Syntax**: the text must be TOML ([`ConfigError::Syntax`], with line and column).
//! 2. **Shape**: serde fills the structs below. Every struct denies unknown fields, so a
//!    misspelled key is an error naming it, never a silently ignored line; a wrong type or
//!    a missing required key is an error naming the key path (`topics[2].queues`), tracked
//!    by `serde_path_to_error`.
//! 3. **Meaning**: [`BrokerConfig::validate`] checks every value and the relations between
//!    them, and names the key of the first problem. The storage limits are checked by
//!    building each shard's [`StorageConfig`] and running [`StorageConfig::validate`], so
//!    the broker and the engine can never disagree about what is valid.
//!
//! A [`BrokerConfig`] returned by [`BrokerConfig::load`] or [`BrokerConfig::from_toml_str`]
//! is valid; the accessors assume it (and assert where a caller's mistake would otherwise
//! give a wrong answer). Code that edits the public fields calls `validate` again.
//!
//! # `queue -> shard`
//!
//! A pure function of the config, so every shard and every client computes the same
//! answer without asking: queue `q` of a topic lives on the shard the topic's `pins` name
//! for `q`, else on shard `q % shard_count` (round-robin). See
//! [`BrokerConfig::queue_shard`]. Brokers register each topic's resolved layout
//! ([`BrokerConfig::shard_layout`], a `spillway_wire` [`ShardLayout`]) with the name
//! servers, and clients evaluate it with [`ShardLayout::shard_for`].
//!
//! This module never touches the disk beyond reading the file, nor the network: a data
//! directory is not created or probed here, and host names are not resolved.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use spillway_storage::record::MAX_TOPIC_BYTES;
use spillway_storage::{FlushMode, QueueId, ShardId, StorageConfig, StorageError};
use spillway_wire::message::{ShardLayout, TopicConfig, MAX_PRODUCE_PARTS};

use crate::address::{self, Endpoint};
use crate::cores::AvailableCores;

/// Most shards a broker runs (`cores` entries or `shard_count`).
pub const MAX_SHARDS: usize = 256;
/// Most queues a topic has.
pub const MAX_QUEUES_PER_TOPIC: u32 = 1024;
/// Most `[[topics]]` entries.
pub const MAX_TOPICS: usize = 16_384;
/// Highest broker id (0 is the master, 1 ..= this are replicas).
pub const MAX_BROKER_ID: u32 = 255;
/// Most `name_servers` entries.
pub const MAX_NAME_SERVERS: usize = 16;
/// Longest cluster or broker name, in bytes.
pub const MAX_NAME_BYTES: usize = 127;
/// Largest config file read.
pub const MAX_CONFIG_FILE_BYTES: u64 = 4 << 20;
/// Highest `limits.max_connections_per_shard`.
pub const MAX_CONNECTIONS_PER_SHARD: usize = 1 << 20;
/// Highest `limits.max_in_flight_requests_per_connection`.
pub const MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION: usize = 65_536;
/// Highest `limits.max_clients`.
pub const MAX_CLIENTS: usize = 1 << 20;
/// Highest `limits.max_consumer_offsets_per_shard`.
pub const MAX_CONSUMER_OFFSETS_PER_SHARD: usize = 1 << 24;
/// Room a frame needs besides one batch: the frame's fixed part and a produce header with
/// up to `MAX_PRODUCE_PARTS` parts (each a topic name and a few numbers).
pub const FRAME_HEADROOM_BYTES: usize = 256 << 10;

/// Default `listen_address`.
pub const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:10911";
/// Default `auto_create_queues`.
pub const DEFAULT_AUTO_CREATE_QUEUES: u32 = 8;
/// Default `limits.max_batch_bytes`: half the default frame, so a full batch and its
/// header always fit one frame (the engine's own default, 16 MiB, would not).
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 << 20;
/// Default `limits.max_connections_per_shard`.
pub const DEFAULT_MAX_CONNECTIONS_PER_SHARD: usize = 4096;
/// Default `limits.max_in_flight_requests_per_connection`.
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION: usize = 256;
/// Default `heartbeat_interval_ms`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 30_000;
/// Default `name_server_timeout_ms`.
pub const DEFAULT_NAME_SERVER_TIMEOUT_MS: u64 = 3_000;
/// Default `client_timeout_ms`.
pub const DEFAULT_CLIENT_TIMEOUT_MS: u64 = 30_000;
/// Default `limits.max_pull_wait_ms`.
pub const DEFAULT_MAX_PULL_WAIT_MS: u32 = 30_000;
/// Default `limits.max_clients`.
pub const DEFAULT_MAX_CLIENTS: usize = 65_536;
/// Default `limits.max_consumer_offsets_per_shard`.
pub const DEFAULT_MAX_CONSUMER_OFFSETS_PER_SHARD: usize = 1_000_000;
/// Longest any of the `_ms` intervals of the cluster section may be (one day).
pub const MAX_INTERVAL_MS: u64 = 86_400_000;

// A shard id is a u16.
const _: () = assert!(MAX_SHARDS <= u16::MAX as usize + 1);
// Queue ids are u32 and pins are keyed by them.
const _: () = assert!(MAX_QUEUES_PER_TOPIC as u64 <= u32::MAX as u64);
// The headroom covers a produce header at its limits (64 bytes per part beside the name
// is generous for an archived part: a string and four u32).
const _: () = assert!(
    FRAME_HEADROOM_BYTES >= spillway_wire::FIXED_BYTES + MAX_PRODUCE_PARTS * (MAX_TOPIC_BYTES + 64)
);
// The defaults are consistent with each other.
const _: () = assert!(
    DEFAULT_MAX_BATCH_BYTES + FRAME_HEADROOM_BYTES <= spillway_wire::DEFAULT_MAX_FRAME_BYTES
);
const _: () = assert!(DEFAULT_AUTO_CREATE_QUEUES <= MAX_QUEUES_PER_TOPIC);

/// Why a config was refused. `Display` is one line naming the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// the file
        path: PathBuf,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`].
    #[error("the config file {path} is larger than {limit} bytes")]
    TooLarge {
        /// the file
        path: PathBuf,
        /// [`MAX_CONFIG_FILE_BYTES`]
        limit: u64,
    },
    /// The text is not valid TOML.
    #[error("TOML syntax error at line {line}, column {column}: {reason}")]
    Syntax {
        /// 1-based line
        line: usize,
        /// 1-based column
        column: usize,
        /// what the parser expected
        reason: String,
    },
    /// A key is unknown, missing, of the wrong type or has a value that is not allowed.
    #[error("{key}: {reason}{}", .line.map(|line| format!(" (line {line})")).unwrap_or_default())]
    Invalid {
        /// Path of the key: `storage.segment_size_bytes`, `topics[2].queues`,
        /// `topics[0].pins.3`.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
        /// Line of the value in the file, when known (errors found while reading it).
        line: Option<usize>,
    },
}

impl ConfigError {
    /// The path of the offending key, for [`ConfigError::Invalid`].
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// What is wrong, for [`ConfigError::Invalid`] and [`ConfigError::Syntax`].
    pub fn reason(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { reason, .. } | ConfigError::Syntax { reason, .. } => {
                Some(reason)
            }
            _ => None,
        }
    }
}

/// A refusal of `key` for `reason`, found by validation (no line known).
fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
        line: None,
    }
}

/// The broker's configuration: one TOML file. `broker/broker.example.toml` documents every
/// key with its default and unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// The cluster this broker registers under with the name servers.
    pub cluster: String,
    /// The broker group (a master and its replicas share it).
    pub broker_name: String,
    /// 0 for the master, 1 ..= [`MAX_BROKER_ID`] for a replica.
    #[serde(default)]
    pub broker_id: u32,
    /// What every shard binds (SO_REUSEPORT): an IP address and a port.
    #[serde(
        default = "default_listen_address",
        deserialize_with = "address::deserialize_socket_address"
    )]
    pub listen_address: SocketAddr,
    /// Where clients reach this broker, as registered with the name servers; `None` means
    /// `listen_address` (which must then be a specific address).
    #[serde(default)]
    pub advertised_address: Option<Endpoint>,
    /// Every name server; the broker registers with all of them.
    pub name_servers: Vec<Endpoint>,
    /// How often the broker heartbeats to every name server.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// How long one connect or request to a name server may take.
    #[serde(default = "default_name_server_timeout_ms")]
    pub name_server_timeout_ms: u64,
    /// A client (consumer group member) silent this long leaves its groups.
    #[serde(default = "default_client_timeout_ms")]
    pub client_timeout_ms: u64,
    /// Cores to pin the shards to, one shard each (shard `i` on `cores[i]`). Exactly one
    /// of `cores` and `shard_count` is set.
    #[serde(default)]
    pub cores: Option<Vec<usize>>,
    /// Number of shards, not pinned to cores.
    #[serde(default)]
    pub shard_count: Option<u16>,
    /// Whether producing to an unknown topic creates it.
    #[serde(default)]
    pub auto_create_topics: bool,
    /// Queue count of auto-created topics.
    #[serde(default = "default_auto_create_queues")]
    pub auto_create_queues: u32,
    /// The storage engine's settings, the same for every shard except `[[shards]]`
    /// overrides.
    #[serde(default)]
    pub storage: StorageSettings,
    /// Limits on what clients may send and hold.
    #[serde(default)]
    pub limits: LimitSettings,
    /// The topics created at start.
    #[serde(default)]
    pub topics: Vec<TopicSettings>,
    /// Per-shard overrides.
    #[serde(default)]
    pub shards: Vec<ShardSettings>,
}

/// `[storage]`: the engine's settings. Names match [`StorageConfig`]'s fields; defaults
/// are the engine's (`StorageConfig::new`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// Root data directory; shard N lives in `<data_dir>/shard-N/`. Required (empty here
    /// means not set).
    pub data_dir: PathBuf,
    /// When an append counts as durable.
    #[serde(with = "FlushModeSetting")]
    pub flush: FlushMode,
    /// In async mode, how often fdatasync runs.
    pub flush_interval_ms: u64,
    /// Size of each commit-log segment file.
    pub segment_size_bytes: u64,
    /// Size at which the group-commit writer seals a buffer and writes it.
    pub write_buffer_bytes: usize,
    /// How much of the recent log each shard keeps in memory for tailing readers.
    pub tail_cache_bytes: usize,
    /// How often index files are synced and a checkpoint taken (entries are written every
    /// 100 ms in between).
    pub checkpoint_interval_ms: u64,
    /// Segments whose newest record is older than this are deleted.
    pub retention_hours: u64,
    /// How often retention and the disk usage marks are checked.
    pub retention_check_interval_ms: u64,
    /// Above this disk usage, the oldest segments are deleted.
    pub disk_high_mark_percent: f64,
    /// Above this disk usage, appends fail with "disk full".
    pub disk_hard_mark_percent: f64,
    /// Zero-fill each next segment while the log is idle (cheaper syncs, one extra write
    /// of every segment).
    pub zero_fill_segments: bool,
}

impl Default for StorageSettings {
    fn default() -> Self {
        let engine = StorageConfig::new(PathBuf::new());
        StorageSettings {
            data_dir: PathBuf::new(),
            flush: engine.flush,
            flush_interval_ms: engine.flush_interval_ms,
            segment_size_bytes: engine.segment_size_bytes,
            write_buffer_bytes: engine.write_buffer_bytes,
            tail_cache_bytes: engine.tail_cache_bytes,
            checkpoint_interval_ms: engine.checkpoint_interval_ms,
            retention_hours: engine.retention_hours,
            retention_check_interval_ms: engine.retention_check_interval_ms,
            disk_high_mark_percent: engine.disk_high_mark_percent,
            disk_hard_mark_percent: engine.disk_hard_mark_percent,
            zero_fill_segments: engine.zero_fill_segments,
        }
    }
}

/// `flush = "sync" | "async"`, for the engine's [`FlushMode`].
#[derive(Serialize, Deserialize)]
#[serde(remote = "FlushMode", rename_all = "lowercase")]
enum FlushModeSetting {
    Sync,
    Async,
}

/// `[limits]`: bounds on what clients may send and hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest record (message), header included.
    pub max_record_bytes: usize,
    /// Largest batch one produce part (one queue) carries.
    pub max_batch_bytes: usize,
    /// Largest frame on a connection, length prefix included.
    pub max_frame_bytes: usize,
    /// Most queues one shard holds (the engine's `max_queues`).
    pub max_queues_per_shard: usize,
    /// Most client connections one shard accepts.
    pub max_connections_per_shard: usize,
    /// Most requests one connection may have in flight.
    pub max_in_flight_requests_per_connection: usize,
    /// Longest a pull may wait for new messages (longer waits are cut to this).
    pub max_pull_wait_ms: u32,
    /// Most clients (consumer group members) the broker tracks.
    pub max_clients: usize,
    /// Most (consumer group, topic, queue) offsets one shard stores.
    pub max_consumer_offsets_per_shard: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let engine = StorageConfig::new(PathBuf::new());
        LimitSettings {
            max_record_bytes: engine.max_record_bytes,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            max_frame_bytes: spillway_wire::DEFAULT_MAX_FRAME_BYTES,
            max_queues_per_shard: engine.max_queues,
            max_connections_per_shard: DEFAULT_MAX_CONNECTIONS_PER_SHARD,
            max_in_flight_requests_per_connection: DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION,
            max_pull_wait_ms: DEFAULT_MAX_PULL_WAIT_MS,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_consumer_offsets_per_shard: DEFAULT_MAX_CONSUMER_OFFSETS_PER_SHARD,
        }
    }
}

/// `[[topics]]`: a topic created at start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    /// Topic name (`spillway_storage::validate_topic` rules).
    pub name: String,
    /// Number of queues, `0 .. queues`.
    pub queues: u32,
    /// Queue → shard pins (`pins = { 0 = 1 }`); queues not listed go round-robin.
    #[serde(default, deserialize_with = "deserialize_pins")]
    pub pins: BTreeMap<u32, u16>,
}

/// `[[shards]]`: settings of one shard that differ from the rest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSettings {
    /// Which shard.
    pub shard: u16,
    /// Its data directory instead of `storage.data_dir` (it lives in
    /// `<data_dir>/shard-<shard>/`).
    pub data_dir: PathBuf,
}

fn default_listen_address() -> SocketAddr {
    DEFAULT_LISTEN_ADDRESS
        .parse()
        .expect("DEFAULT_LISTEN_ADDRESS is a socket address")
}

fn default_heartbeat_interval_ms() -> u64 {
    DEFAULT_HEARTBEAT_INTERVAL_MS
}

fn default_name_server_timeout_ms() -> u64 {
    DEFAULT_NAME_SERVER_TIMEOUT_MS
}

fn default_client_timeout_ms() -> u64 {
    DEFAULT_CLIENT_TIMEOUT_MS
}

fn default_auto_create_queues() -> u32 {
    DEFAULT_AUTO_CREATE_QUEUES
}

/// Reads `pins = { 0 = 1, 7 = 0 }`. TOML keys are strings, so each is parsed as a queue
/// number here; `07` is refused, or it and `7` would silently be the same pin.
fn deserialize_pins<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<u32, u16>, D::Error> {
    let pins = BTreeMap::<String, u16>::deserialize(deserializer)?;
    pins.into_iter()
        .map(|(queue, shard)| match queue.parse::<u32>() {
            Ok(number) if number.to_string() == queue => Ok((number, shard)),
            _ => Err(serde::de::Error::custom(format!(
                "pin {queue:?} is not a queue number; write `queue = shard`, e.g. \
                 pins = {{ 0 = 1 }}"
            ))),
        })
        .collect()
}

impl BrokerConfig {
    /// Reads, parses and validates the config file at `path` against the cores this
    /// process may run on.
    pub fn load(path: impl AsRef<Path>) -> Result<BrokerConfig, ConfigError> {
        Self::load_for(path, &AvailableCores::detect())
    }

    /// [`BrokerConfig::load`] for a given set of available cores.
    pub fn load_for(
        path: impl AsRef<Path>,
        cores: &AvailableCores,
    ) -> Result<BrokerConfig, ConfigError> {
        let path = path.as_ref();
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_FILE_BYTES,
            });
        }
        Self::from_toml_str_for(&text, cores)
    }

    /// Parses and validates a config against the cores this process may run on.
    pub fn from_toml_str(text: &str) -> Result<BrokerConfig, ConfigError> {
        Self::from_toml_str_for(text, &AvailableCores::detect())
    }

    /// [`BrokerConfig::from_toml_str`] for a given set of available cores.
    pub fn from_toml_str_for(
        text: &str,
        cores: &AvailableCores,
    ) -> Result<BrokerConfig, ConfigError> {
        let config = Self::parse(text)?;
        config.validate(cores)?;
        Ok(config)
    }

    /// Syntax and shape only: no validation of the values.
    fn parse(text: &str) -> Result<BrokerConfig, ConfigError> {
        // Syntax first, so that a syntax error is reported as one, with its position.
        if let Err(error) = toml::from_str::<toml::Table>(text) {
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_and_column(text, span.start));
            return Err(ConfigError::Syntax {
                line,
                column,
                reason: one_line(error.message()),
            });
        }
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
            let path = error.path().to_string();
            let error = error.into_inner();
            let message = one_line(error.message());
            // serde reports a missing field at its parent; name the field itself.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.strip_suffix('`'))
            {
                let key = if path == "." {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                return invalid(key, "required, but not set");
            }
            ConfigError::Invalid {
                key: path,
                reason: message,
                line: error.span().map(|span| line_and_column(text, span.start).0),
            }
        })
    }

    /// Checks every value and the relations between them; the error names the key of the
    /// first problem found. `cores` is the set shards may be pinned to.
    pub fn validate(&self, cores: &AvailableCores) -> Result<(), ConfigError> {
        self.validate_identity()?;
        self.validate_network()?;
        self.validate_shards(cores)?;
        self.validate_storage()?;
        self.validate_limits()?;
        self.validate_topics()?;
        self.validate_shard_overrides()?;
        // The engine's own rules, per shard, on exactly what each shard will be given.
        for shard in 0..self.shard_count() {
            self.storage_config(ShardId(shard))
                .validate()
                .map_err(storage_error)?;
        }
        self.validate_queues_per_shard()
    }

    fn validate_identity(&self) -> Result<(), ConfigError> {
        validate_name("cluster", &self.cluster)?;
        validate_name("broker_name", &self.broker_name)?;
        if self.broker_id > MAX_BROKER_ID {
            return Err(invalid(
                "broker_id",
                format!(
                    "{} is above the limit of {MAX_BROKER_ID} (MAX_BROKER_ID); 0 is the \
                     master, 1 to {MAX_BROKER_ID} are replicas",
                    self.broker_id
                ),
            ));
        }
        if !self.is_master() && self.auto_create_topics {
            return Err(invalid(
                "auto_create_topics",
                format!(
                    "must be false on a replica (broker_id {}): only the master (broker_id 0) \
                     takes writes and creates topics",
                    self.broker_id
                ),
            ));
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("name_server_timeout_ms", self.name_server_timeout_ms),
            ("client_timeout_ms", self.client_timeout_ms),
        ] {
            if value == 0 || value > MAX_INTERVAL_MS {
                return Err(invalid(
                    key,
                    format!("{value} is outside 1 to {MAX_INTERVAL_MS} (MAX_INTERVAL_MS)"),
                ));
            }
        }
        if self.listen_address.port() == 0 {
            if let Some(advertised) = &self.advertised_address {
                return Err(invalid(
                    "advertised_address",
                    format!(
                        "{advertised} cannot be given with listen_address port 0: the port is \
                         only known once bound, and that is what gets advertised"
                    ),
                ));
            }
        }
        match &self.advertised_address {
            None if self.listen_address.ip().is_unspecified() => {
                return Err(invalid(
                    "advertised_address",
                    format!(
                        "required when listen_address ({}) is an unspecified address: clients \
                         cannot connect to it",
                        self.listen_address
                    ),
                ));
            }
            None => {}
            Some(advertised) => {
                check_endpoint("advertised_address", advertised)?;
            }
        }
        if self.name_servers.is_empty() {
            return Err(invalid(
                "name_servers",
                "at least one name server is required: brokers register with them and \
                 clients find brokers through them",
            ));
        }
        if self.name_servers.len() > MAX_NAME_SERVERS {
            return Err(invalid(
                "name_servers",
                format!(
                    "{} entries, above the limit of {MAX_NAME_SERVERS} (MAX_NAME_SERVERS)",
                    self.name_servers.len()
                ),
            ));
        }
        let mut seen = HashMap::new();
        for (index, name_server) in self.name_servers.iter().enumerate() {
            let key = format!("name_servers[{index}]");
            check_endpoint(&key, name_server)?;
            if let Some(first) = seen.insert(name_server, index) {
                return Err(invalid(
                    key,
                    format!("{name_server} is listed twice (also name_servers[{first}])"),
                ));
            }
        }
        Ok(())
    }

    fn validate_shards(&self, available: &AvailableCores) -> Result<(), ConfigError> {
        match (&self.cores, self.shard_count) {
            (Some(_), Some(_)) => Err(invalid(
                "shard_count",
                "set either cores (one shard pinned to each) or shard_count, not both",
            )),
            (None, None) => Err(invalid(
                "cores",
                "required: set cores (one shard pinned to each listed core, e.g. \
                 cores = [0, 1]) or shard_count",
            )),
            (None, Some(count)) => {
                if count == 0 || usize::from(count) > MAX_SHARDS {
                    return Err(invalid(
                        "shard_count",
                        format!("{count} is outside 1 to {MAX_SHARDS} (MAX_SHARDS)"),
                    ));
                }
                Ok(())
            }
            (Some(cores), None) => {
                if cores.is_empty() || cores.len() > MAX_SHARDS {
                    return Err(invalid(
                        "cores",
                        format!(
                            "{} entries; one shard runs per core, 1 to {MAX_SHARDS} \
                             (MAX_SHARDS)",
                            cores.len()
                        ),
                    ));
                }
                let mut seen = HashMap::new();
                for (index, &core) in cores.iter().enumerate() {
                    let key = format!("cores[{index}]");
                    if let Some(first) = seen.insert(core, index) {
                        return Err(invalid(
                            key,
                            format!("core {core} is listed twice (also cores[{first}])"),
                        ));
                    }
                    if !available.contains(core) {
                        return Err(invalid(
                            key,
                            format!(
                                "core {core} does not exist or is not available to this \
                                 process (available cores: {available})"
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if storage.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "storage.data_dir",
                "required: the directory the shards keep their data in",
            ));
        }
        // Checked here, each under its own key (the engine reports all three as one).
        for (key, value) in [
            ("storage.flush_interval_ms", storage.flush_interval_ms),
            (
                "storage.checkpoint_interval_ms",
                storage.checkpoint_interval_ms,
            ),
            (
                "storage.retention_check_interval_ms",
                storage.retention_check_interval_ms,
            ),
            ("storage.retention_hours", storage.retention_hours),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let frame_range =
            spillway_wire::MIN_MAX_FRAME_BYTES..=spillway_wire::ABSOLUTE_MAX_FRAME_BYTES;
        if !frame_range.contains(&limits.max_frame_bytes) {
            return Err(invalid(
                "limits.max_frame_bytes",
                format!(
                    "{} is outside {} to {} bytes",
                    limits.max_frame_bytes,
                    frame_range.start(),
                    frame_range.end()
                ),
            ));
        }
        if limits.max_frame_bytes < limits.max_batch_bytes.saturating_add(FRAME_HEADROOM_BYTES) {
            return Err(invalid(
                "limits.max_frame_bytes",
                format!(
                    "{} bytes cannot carry a full batch: it must be at least \
                     limits.max_batch_bytes ({}) + {FRAME_HEADROOM_BYTES} \
                     (FRAME_HEADROOM_BYTES, for the frame and produce headers)",
                    limits.max_frame_bytes, limits.max_batch_bytes
                ),
            ));
        }
        for (key, value, limit) in [
            (
                "limits.max_connections_per_shard",
                limits.max_connections_per_shard,
                MAX_CONNECTIONS_PER_SHARD,
            ),
            (
                "limits.max_in_flight_requests_per_connection",
                limits.max_in_flight_requests_per_connection,
                MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION,
            ),
            ("limits.max_clients", limits.max_clients, MAX_CLIENTS),
            (
                "limits.max_consumer_offsets_per_shard",
                limits.max_consumer_offsets_per_shard,
                MAX_CONSUMER_OFFSETS_PER_SHARD,
            ),
            (
                "limits.max_pull_wait_ms",
                limits.max_pull_wait_ms as usize,
                MAX_INTERVAL_MS as usize,
            ),
        ] {
            if value == 0 || value > limit {
                return Err(invalid(key, format!("{value} is outside 1 to {limit}")));
            }
        }
        Ok(())
    }

    fn validate_topics(&self) -> Result<(), ConfigError> {
        check_queue_count("auto_create_queues", self.auto_create_queues)?;
        if self.topics.len() > MAX_TOPICS {
            return Err(invalid(
                "topics",
                format!(
                    "{} topics, above the limit of {MAX_TOPICS} (MAX_TOPICS)",
                    self.topics.len()
                ),
            ));
        }
        let shard_count = self.shard_count();
        let mut seen = HashMap::new();
        for (index, topic) in self.topics.iter().enumerate() {
            let key = |field: &str| format!("topics[{index}].{field}");
            if let Err(error) = spillway_storage::validate_topic(&topic.name) {
                let reason = match error {
                    StorageError::BadTopic { reason, .. } => {
                        format!("{:?} is not a valid topic name: {reason}", topic.name)
                    }
                    other => other.to_string(),
                };
                return Err(invalid(key("name"), reason));
            }
            if let Some(first) = seen.insert(topic.name.as_str(), index) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "topic {:?} is defined twice (also topics[{first}])",
                        topic.name
                    ),
                ));
            }
            check_queue_count(&key("queues"), topic.queues)?;
            for (&queue, &shard) in &topic.pins {
                let pin_key = format!("topics[{index}].pins.{queue}");
                if queue >= topic.queues {
                    return Err(invalid(
                        pin_key,
                        format!(
                            "queue {queue} does not exist: topic {:?} has {} queues (0 to {})",
                            topic.name,
                            topic.queues,
                            topic.queues - 1
                        ),
                    ));
                }
                if shard >= shard_count {
                    return Err(invalid(
                        pin_key,
                        format!(
                            "shard {shard} does not exist: this broker has {shard_count} \
                             shards (0 to {})",
                            shard_count - 1
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_shard_overrides(&self) -> Result<(), ConfigError> {
        let shard_count = self.shard_count();
        let mut seen = HashMap::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let key = |field: &str| format!("shards[{index}].{field}");
            if shard.shard >= shard_count {
                return Err(invalid(
                    key("shard"),
                    format!(
                        "shard {} does not exist: this broker has {shard_count} shards \
                         (0 to {})",
                        shard.shard,
                        shard_count - 1
                    ),
                ));
            }
            if let Some(first) = seen.insert(shard.shard, index) {
                return Err(invalid(
                    key("shard"),
                    format!(
                        "shard {} is overridden twice (also shards[{first}])",
                        shard.shard
                    ),
                ));
            }
            if shard.data_dir.as_os_str().is_empty() {
                return Err(invalid(key("data_dir"), "must not be empty"));
            }
        }
        Ok(())
    }

    fn validate_queues_per_shard(&self) -> Result<(), ConfigError> {
        let queues = self.queues_per_shard();
        let limit = self.limits.max_queues_per_shard;
        if let Some((shard, &count)) = queues.iter().enumerate().find(|(_, &count)| count > limit) {
            return Err(invalid(
                "limits.max_queues_per_shard",
                format!(
                    "the configured topics put {count} queues on shard {shard}, above this \
                     limit of {limit}"
                ),
            ));
        }
        Ok(())
    }

    /// Whether this broker is its group's master (broker id 0).
    pub fn is_master(&self) -> bool {
        self.broker_id == 0
    }

    /// Number of shards: `cores.len()` or `shard_count`.
    pub fn shard_count(&self) -> u16 {
        let count = match (&self.cores, self.shard_count) {
            // Validation bounds cores.len() by MAX_SHARDS, which fits a u16 shard id count.
            (Some(cores), _) => u16::try_from(cores.len()).unwrap_or(u16::MAX),
            (None, Some(count)) => count,
            (None, None) => 0,
        };
        assert!(count > 0, "BrokerConfig used without validation: no shards");
        count
    }

    /// The core `shard` is pinned to, or `None` when `shard_count` runs shards unpinned.
    pub fn shard_core(&self, shard: ShardId) -> Option<usize> {
        self.check_shard(shard);
        self.cores.as_ref().map(|cores| cores[usize::from(shard.0)])
    }

    /// Where clients reach this broker: `advertised_address`, else `listen_address`.
    pub fn advertised_endpoint(&self) -> Endpoint {
        self.advertised_address
            .clone()
            .unwrap_or_else(|| self.listen_address.into())
    }

    /// The root data directory of `shard`: its `[[shards]]` override, else
    /// `storage.data_dir`. The shard's files are in `shard-<id>/` below it.
    pub fn shard_data_dir(&self, shard: ShardId) -> &Path {
        self.check_shard(shard);
        self.shards
            .iter()
            .find(|settings| settings.shard == shard.0)
            .map_or(&self.storage.data_dir, |settings| &settings.data_dir)
    }

    /// The storage engine's configuration for `shard`. `repair` is always false: it is a
    /// decision for one start, never a file setting.
    pub fn storage_config(&self, shard: ShardId) -> StorageConfig {
        self.check_shard(shard);
        let storage = &self.storage;
        let limits = &self.limits;
        // A struct literal, not `..StorageConfig::new()`: a new engine setting fails to
        // compile here until the broker decides where it comes from.
        StorageConfig {
            data_dir: self.shard_data_dir(shard).to_owned(),
            shard_id: shard,
            segment_size_bytes: storage.segment_size_bytes,
            flush: storage.flush,
            flush_interval_ms: storage.flush_interval_ms,
            write_buffer_bytes: storage.write_buffer_bytes,
            tail_cache_bytes: storage.tail_cache_bytes,
            max_record_bytes: limits.max_record_bytes,
            max_batch_bytes: limits.max_batch_bytes,
            max_queues: limits.max_queues_per_shard,
            checkpoint_interval_ms: storage.checkpoint_interval_ms,
            retention_hours: storage.retention_hours,
            retention_check_interval_ms: storage.retention_check_interval_ms,
            disk_high_mark_percent: storage.disk_high_mark_percent,
            disk_hard_mark_percent: storage.disk_hard_mark_percent,
            zero_fill_segments: storage.zero_fill_segments,
            repair: false,
        }
    }

    /// The configured topic named `name`.
    pub fn topic(&self, name: &str) -> Option<&TopicSettings> {
        self.topics.iter().find(|topic| topic.name == name)
    }

    /// The shard that owns queue `queue` of `topic`. The rule, which clients compute too:
    ///
    /// 1. if the topic is configured with a pin for the queue, the pinned shard;
    /// 2. otherwise `queue % shard_count` (round-robin; also every queue of an auto-created
    ///    topic).
    ///
    /// It does not check that the queue exists: a request for a queue the topic does not
    /// have still goes to one shard, which answers that the queue is not found.
    pub fn queue_shard(&self, topic: &str, queue: QueueId) -> ShardId {
        let pins = self.topic(topic).map(|topic| &topic.pins);
        shard_of(pins, queue, self.shard_count())
    }

    /// [`BrokerConfig::queue_shard`] for a configured topic at hand (no lookup by name).
    pub fn topic_queue_shard(&self, topic: &TopicSettings, queue: QueueId) -> ShardId {
        shard_of(Some(&topic.pins), queue, self.shard_count())
    }

    /// The resolved layout of `topic` as brokers register it with the name servers and
    /// clients evaluate it ([`ShardLayout::shard_for`]): round-robin when nothing is
    /// pinned, otherwise every queue's shard, so that clients need not know how pins and
    /// round-robin mix.
    pub fn shard_layout(&self, topic: &TopicSettings) -> ShardLayout {
        if topic.pins.is_empty() {
            return ShardLayout::RoundRobin;
        }
        let shard_count = self.shard_count();
        ShardLayout::Pinned(
            (0..topic.queues)
                .map(|queue| {
                    spillway_wire::ShardId(
                        shard_of(Some(&topic.pins), QueueId(queue), shard_count).0,
                    )
                })
                .collect(),
        )
    }

    /// The configured topics as registered with the name servers.
    pub fn wire_topics(&self) -> Vec<TopicConfig> {
        self.topics
            .iter()
            .map(|topic| TopicConfig {
                topic: topic.name.clone(),
                queue_count: topic.queues,
                shard_layout: self.shard_layout(topic),
            })
            .collect()
    }

    /// How many configured queues each shard owns, indexed by shard.
    pub fn queues_per_shard(&self) -> Vec<usize> {
        let shard_count = self.shard_count();
        let mut queues = vec![0; usize::from(shard_count)];
        for topic in &self.topics {
            for queue in 0..topic.queues {
                let shard = shard_of(Some(&topic.pins), QueueId(queue), shard_count);
                queues[usize::from(shard.0)] += 1;
            }
        }
        queues
    }

    /// Things that are allowed but probably not meant, for the log and `--check`.
    pub fn warnings(&self, cores: &AvailableCores) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(count) = self.shard_count {
            if usize::from(count) > cores.len() {
                warnings.push(format!(
                    "shard_count = {count} is more than the {} cores this process may run on: \
                     shards will share cores",
                    cores.len()
                ));
            }
        }
        warnings
    }

    fn check_shard(&self, shard: ShardId) {
        let shard_count = self.shard_count();
        assert!(
            shard.0 < shard_count,
            "shard {shard} out of range: the broker has {shard_count} shards"
        );
    }
}

/// The `queue -> shard` rule: the pin, else round-robin.
fn shard_of(pins: Option<&BTreeMap<u32, u16>>, queue: QueueId, shard_count: u16) -> ShardId {
    assert!(shard_count > 0, "a broker has at least one shard");
    match pins.and_then(|pins| pins.get(&queue.0)) {
        Some(&shard) => ShardId(shard),
        // The remainder is below shard_count, a u16.
        None => ShardId((queue.0 % u32::from(shard_count)) as u16),
    }
}

/// A cluster or broker name: 1 to [`MAX_NAME_BYTES`] bytes of letters, digits, `_ . -`.
fn validate_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(invalid(
            key,
            format!("must be 1 to {MAX_NAME_BYTES} bytes long"),
        ));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
    {
        return Err(invalid(
            key,
            format!("{name:?} may contain only letters, digits and _ . -"),
        ));
    }
    Ok(())
}

/// An address a peer connects to: a port and a specific host.
fn check_endpoint(key: &str, endpoint: &Endpoint) -> Result<(), ConfigError> {
    if endpoint.port == 0 {
        return Err(invalid(key, format!("{endpoint}: port 0 is not allowed")));
    }
    if endpoint.is_unspecified() {
        return Err(invalid(
            key,
            format!("{endpoint} is an unspecified address, which nobody can connect to"),
        ));
    }
    Ok(())
}

fn check_queue_count(key: &str, queues: u32) -> Result<(), ConfigError> {
    if queues == 0 || queues > MAX_QUEUES_PER_TOPIC {
        return Err(invalid(
            key,
            format!(
                "{queues} queues is outside 1 to {MAX_QUEUES_PER_TOPIC} (MAX_QUEUES_PER_TOPIC)"
            ),
        ));
    }
    Ok(())
}

/// The engine's refusal of a shard's [`StorageConfig`], under the broker's key for the
/// setting.
fn storage_error(error: StorageError) -> ConfigError {
    match error {
        StorageError::Config { key, reason } => {
            let key = match key {
                "max_record_bytes" | "max_batch_bytes" => format!("limits.{key}"),
                "max_queues" => "limits.max_queues_per_shard".to_owned(),
                other => format!("storage.{other}"),
            };
            invalid(key, reason)
        }
        other => invalid("storage", other.to_string()),
    }
}

/// 1-based line and column of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
    (line, column)
}

/// A parser message on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
