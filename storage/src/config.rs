//! `StorageConfig`: every knob of one shard's store, its defaults and the checks that tie
//! the limits together.

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{Result, StorageError};
use crate::ids::ShardId;
use crate::record::{ABSOLUTE_MAX_RECORD_BYTES, FIXED_BYTES};

/// O_DIRECT alignment of positions, lengths and buffers.
pub const BLOCK_BYTES: u64 = 4096;

/// When an append counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// After an fdatasync that covers it: survives power loss.
    Sync,
    /// After its O_DIRECT write completed: survives a process crash; fdatasync runs every
    /// `flush_interval_ms`.
    Async,
}

/// Configuration of one shard's store.
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Root data directory; the shard lives in `<data_dir>/shard-<shard_id>/`.
    pub data_dir: PathBuf,
    /// Which shard this is.
    pub shard_id: ShardId,
    /// Size of each commit-log segment file (multiple of 4096).
    pub segment_size_bytes: u64,
    /// Flush mode.
    pub flush: FlushMode,
    /// In async mode, how often fdatasync runs.
    pub flush_interval_ms: u64,
    /// Size at which the group-commit writer seals a buffer and writes it; several such
    /// writes are in flight at once. A single record larger than this gets a write of its own.
    pub write_buffer_bytes: usize,
    /// How much of the recent log stays in memory for tailing readers.
    pub tail_cache_bytes: usize,
    /// Largest record.
    pub max_record_bytes: usize,
    /// Largest batch accepted by one append.
    pub max_batch_bytes: usize,
    /// Most queues this shard holds.
    pub max_queues: usize,
    /// How often index files are synced and a checkpoint taken (index entries are written
    /// every 100 ms between checkpoints, see `ShardStore::write_indexes`).
    pub checkpoint_interval_ms: u64,
    /// Segments whose newest record is older than this are deleted.
    pub retention_hours: u64,
    /// How often retention and the disk usage marks are checked.
    pub retention_check_interval_ms: u64,
    /// Above this disk usage, the oldest segments are deleted.
    pub disk_high_mark_percent: f64,
    /// Above this disk usage, appends fail with `DiskFull`.
    pub disk_hard_mark_percent: f64,
    /// Zero-fill each prepared segment while the log is idle, so that syncs of the data
    /// later written there need no file-system journal commit (see `zero_fill`). Costs
    /// one extra write of every segment; off where that matters more (flash wear).
    pub zero_fill_segments: bool,
    /// Truncate the log at damage found before its tail instead of refusing to start.
    pub repair: bool,
}

impl StorageConfig {
    /// Defaults for shard 0 under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            shard_id: ShardId(0),
            segment_size_bytes: 1 << 30,
            flush: FlushMode::Sync,
            flush_interval_ms: 500,
            write_buffer_bytes: 1 << 20,
            tail_cache_bytes: 256 << 20,
            max_record_bytes: 4 << 20,
            max_batch_bytes: 16 << 20,
            max_queues: 65_536,
            checkpoint_interval_ms: 1_000,
            retention_hours: 72,
            retention_check_interval_ms: 10_000,
            disk_high_mark_percent: 85.0,
            disk_hard_mark_percent: 95.0,
            zero_fill_segments: true,
            repair: false,
        }
    }

    /// Directory of this shard.
    pub fn shard_dir(&self) -> PathBuf {
        self.data_dir.join(format!("shard-{}", self.shard_id.0))
    }

    /// Bytes after a torn write in which valid-looking records are still treated as part of
    /// the torn tail. It bounds the data that can be in flight and unsynced at a crash: the
    /// writer issues no write once `MAX_UNSYNCED_BUFFERS` buffers are unsynced, so at most
    /// one more can be in flight beyond them; one buffer of slack covers the partial block.
    pub fn torn_tail_window_bytes(&self) -> u64 {
        (crate::commit_log::MAX_UNSYNCED_BUFFERS + 2) * self.largest_write_bytes()
    }

    /// The largest single write: a full buffer, or one record too big for a buffer.
    pub fn largest_write_bytes(&self) -> u64 {
        (self.write_buffer_bytes.max(self.max_record_bytes) as u64 + BLOCK_BYTES)
            .next_multiple_of(BLOCK_BYTES)
    }

    /// Checks the relations between the limits.
    pub fn validate(&self) -> Result<()> {
        let fail = |key, reason: String| Err(StorageError::Config { key, reason });
        if self.max_record_bytes < FIXED_BYTES || self.max_record_bytes > ABSOLUTE_MAX_RECORD_BYTES
        {
            return fail(
                "max_record_bytes",
                format!("must be between {FIXED_BYTES} and {ABSOLUTE_MAX_RECORD_BYTES}"),
            );
        }
        if self.write_buffer_bytes < 16 * BLOCK_BYTES as usize
            || self.write_buffer_bytes % BLOCK_BYTES as usize != 0
        {
            return fail(
                "write_buffer_bytes",
                "must be a multiple of 4096 and at least 64 KiB".into(),
            );
        }
        if self.segment_size_bytes % BLOCK_BYTES != 0
            || self.segment_size_bytes < self.largest_write_bytes()
        {
            return fail(
                "segment_size_bytes",
                "must be a multiple of 4096 and hold the largest write (write_buffer_bytes or \
                 max_record_bytes, plus a block)"
                    .into(),
            );
        }
        if self.max_batch_bytes < self.max_record_bytes {
            return fail(
                "max_batch_bytes",
                "must be at least max_record_bytes".into(),
            );
        }
        if (self.tail_cache_bytes as u64) < self.largest_write_bytes() {
            return fail(
                "tail_cache_bytes",
                "must be at least write_buffer_bytes".into(),
            );
        }
        if self.flush_interval_ms == 0
            || self.checkpoint_interval_ms == 0
            || self.retention_check_interval_ms == 0
        {
            return fail("flush_interval_ms", "intervals must be above 0".into());
        }
        if self.max_queues == 0 {
            return fail("max_queues", "must be above 0".into());
        }
        if !(0.0..=100.0).contains(&self.disk_high_mark_percent)
            || !(self.disk_high_mark_percent..=100.0).contains(&self.disk_hard_mark_percent)
        {
            return fail(
                "disk_hard_mark_percent",
                "marks must satisfy 0 <= high <= hard <= 100".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        StorageConfig::new("/tmp/x").validate().unwrap();
    }

    #[test]
    fn segment_must_hold_the_largest_write() {
        let mut config = StorageConfig::new("/tmp/x");
        config.segment_size_bytes = config.max_record_bytes as u64;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("segment_size_bytes"), "{error}");
    }
}
