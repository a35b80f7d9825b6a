//! `spillway-broker`: the thread-per-core broker.
//!
//! # Why it looks like this
//!
//! A broker runs one **shard** per configured core, each a glommio executor owning a set
//! of queues with their own commit log, indexes and consumer offsets. Nothing on the data
//! path is shared between shards: a request for a queue runs on the queue's owner, reached
//! over a bounded channel ([`shard::Shard::run_on`]), and `queue -> shard` is a pure
//! function of the topic's layout, which clients compute too. Every shard accepts
//! connections on the same port (SO_REUSEPORT), so any connection can carry requests for
//! any queue.
//!
//! Everything a shard needs is *derivable* from the config without asking anyone: its
//! [`StorageConfig`](spillway_storage::StorageConfig) ([`BrokerConfig::storage_config`])
//! and which queues are its own. So the config is checked whole, once, at start: a broker
//! that starts has a config in which every shard exists, every pin names a real queue and
//! shard, and every engine limit is consistent; a broker that does not start says which
//! key is wrong and why.
//!
//! # Map
//!
//! * [`cli`]: the command line's config loading and exit statuses (shared with
//!   `spillway-perf serve-broker`); [`server`]: threads, start, the two-phase stop; [`listener`]: the shared port.
//! * [`shard`]: what a shard owns and how work moves between shards.
//! * [`connection`]: one client connection; [`dispatch`]: opcode to handler;
//!   [`handlers`]: produce, pull, offsets, topics, clients; [`refusal`]: errors as clients
//!   hear them; [`long_poll`]: pulls waiting for messages.
//! * [`topic_table`]: the topics and their persistence; [`consumer_offsets`]: durable
//!   consumer offsets per shard; [`client_registry`]: consumer group membership.
//! * [`registration`]: keeping every name server informed; [`rpc_client`]: calling a peer.
//! * [`config`]: [`BrokerConfig`], loading, validation, `storage_config`, `queue_shard`;
//!   [`address`]: endpoints; [`cores`]: the cores shards may be pinned to; [`summary`]:
//!   what `spillway-broker --check` prints.
//!
//! `broker/broker.example.toml` documents every key; a test keeps it complete and valid.

pub mod address;
pub mod cli;
pub mod client_registry;
pub mod config;
pub mod connection;
pub mod consumer_offsets;
pub mod cores;
pub mod dispatch;
pub mod handlers;
pub mod listener;
pub mod long_poll;
pub mod refusal;
pub mod registration;
pub mod request_stats;
pub mod rpc_client;
pub mod server;
pub mod shard;
pub mod summary;
pub mod topic_table;

pub use config::{BrokerConfig, ConfigError};
