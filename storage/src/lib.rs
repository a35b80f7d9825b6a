//! Spillway's storage engine: one shard's durable message store.
//!
//! # Why it looks like this
//!
//! A broker absorbs a burst by writing everything sequentially and serving it back later.
//! So each shard (one per core, one glommio executor) has **one** append-only commit log in
//! which all its queues interleave — many queues never turn into many random writes — and a
//! small fixed-width index per queue that points into the log. The log is written only
//! through io_uring with O_DIRECT in 4 KiB-aligned blocks: no page cache to double-buffer,
//! no write-back storm, and the engine decides when data is durable (group commit, one
//! fdatasync for many producers). Because O_DIRECT skips the page cache, the recent tail of
//! the log stays in memory for tailing readers.
//!
//! Everything runs on the executor that opened the store: `Rc`, `RefCell`, no locks, no
//! atomics. The engine knows nothing about sockets or the wire protocol; the broker hands it
//! batches in the [`record`] format, encoded once by the producer, and the engine stamps
//! (queue offset, log position, store time) and stores exactly those bytes.
//!
//! # Map
//!
//! * [`record`]: the record format, producer-side builder, stamping, verification.
//! * [`signal`]: a single-threaded change notification (also used by the broker).
//! * `commit_log`: segments, group-commit writer, flush modes; `tail_cache`: recent bytes;
//!   `next_segment`: the next segment file, created ahead of the roll; `zero_fill`: that
//!   file zero-filled in the log's idle moments, so syncs of its data need no journal commit.
//! * `queue_index`: per-queue index; `checkpoint`: how far the indexes are complete.
//! * `recovery`: scan, torn-tail cut, damage detection; `retention`: segment deletion.
//! * `store`: [`ShardStore`], tying them together; `read`: the read path.
//!
//! DURABILITY.md in the repository root says what an acknowledgement means in each mode.

mod checkpoint;
mod commit_log;
mod config;
mod creation_line;
mod error;
mod ids;
mod next_segment;
mod queue_index;
mod read;
pub mod record;
mod recovery;
mod retention;
pub mod signal;
mod store;
mod tail_cache;
mod ticket_line;
mod topic_deletion;
mod zero_fill;

pub use commit_log::LogStats;
pub use config::{FlushMode, StorageConfig, BLOCK_BYTES};
pub use error::{Result, StorageError};
pub use ids::{LogPosition, QueueId, QueueOffset, ShardId};
pub use queue_index::{IndexEntry, ENTRY_BYTES};
pub use read::{ReadBatch, ReadRecord, ReadRequest, ReadStatus, TagFilter, MAX_READ_MESSAGES};
pub use retention::{disk_usage_percent, RetentionReport};
pub use store::{validate_topic, AppendOutcome, RecoveryReport, ShardStore};
