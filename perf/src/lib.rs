//! `spillway_perf`: the parts of Spillway's load generator that do not need the client
//! library, as a library so the `spillway-perf` binary, its integration tests and the
//! load drivers share them.
//!
//! * [`local_cluster`]: a name server and a broker on loopback as child processes of
//!   `spillway-perf` itself (through the hidden `serve-*` subcommands in [`serve`]), in a
//!   temporary directory, started and stopped cleanly (`quickstart`, tests).
//! * [`stats`]: per-worker latency histograms and counters, the once-a-second progress
//!   line, the end-of-run summary from merged histograms (`--json`, `--hdr`).
//! * [`rate_limiter`]: a token bucket holding a worker to a message rate.
//! * [`message_body`]: message ids and the body layout (id, born time, filler).
//! * [`ledger`]: the file of acknowledged messages `produce --ledger` writes.
//! * [`verification`]: what `verify --ledger` checks: lost, duplicated, corrupted, out of
//!   order.
//!
//! * [`drivers`]: producing and consuming through the client library (`produce`,
//!   `consume`, `e2e`, `verify`, `quickstart`), so the figures are what applications get.
//!
//! The storage benchmark (`spillway-perf storage`) and the disk baseline (`spillway-perf
//! disk`) live in the binary's own modules and talk to the storage engine or the disk
//! directly.

pub mod drivers;
pub mod ledger;
pub mod load_error;
pub mod local_cluster;
pub mod message_body;
pub mod rate_limiter;
pub mod serve;
pub mod stats;
pub mod verification;

pub use load_error::LoadError;
