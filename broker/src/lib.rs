//! `spillway-broker`: the thread-per-core broker. Today: its configuration.
//!
//! # Why the config is shaped like this
//!
//! A broker runs one **shard** per configured core, each a glommio executor owning a set
//! of queues with their own commit log. Nothing on the data path is shared, so everything a
//! shard needs to know has to be *derivable* from the config without asking anyone:
//! its [`StorageConfig`](spillway_storage::StorageConfig)
//! ([`BrokerConfig::storage_config`]) and which queues are its own
//! ([`BrokerConfig::queue_shard`], a pure function that clients compute too). So the config
//! is checked whole, once, at start: a broker that starts has a config in which every shard
//! exists, every pin names a real queue and shard, and every engine limit is consistent.
//! A broker that does not start says which key is wrong and why.
//!
//! # Map
//!
//! * [`config`]: [`BrokerConfig`], loading, validation, `storage_config`, `queue_shard`.
//! * [`address`]: `host:port` endpoints and the listen address.
//! * [`cores`]: the cores this process may pin shards to.
//! * [`summary`]: what `spillway-broker --check` prints.
//!
//! `broker/broker.example.toml` documents every key; a test keeps it complete and valid.
//! The server itself (listeners, shards, registration) arrives with the cluster issue.

pub mod address;
pub mod config;
pub mod cores;
pub mod summary;

pub use config::{BrokerConfig, ConfigError};
