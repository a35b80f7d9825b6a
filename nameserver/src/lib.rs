//! `spillway-nameserver`: the route directory brokers register with and clients ask.
//!
//! A name server keeps everything in memory and shares nothing: brokers register and
//! heartbeat to *every* name server, and a client may ask any of them. A broker silent for
//! longer than `broker_timeout_ms` is forgotten by a periodic scan. Restarting a name server
//! loses nothing that matters: brokers find it empty on their next heartbeat
//! (`registration_needed`) and register again.
//!
//! # Map
//!
//! * [`registry`]: the state (clusters, broker groups, topics, heartbeats) and its rules;
//!   pure, with the clock passed in.
//! * [`server`]: one glommio executor serving the wire protocol from the registry, the
//!   expiry scan, shutdown on a signal.
//! * [`config`]: defaults, TOML file, flags, validation.
//! * [`cli`]: the command line (flags, exit statuses), shared with `spillway-perf`.

pub mod cli;
pub mod config;
pub mod registry;
pub mod server;

pub use config::{ConfigError, ConfigOverrides, NameServerConfig};
pub use registry::{Registry, RegistryError};
