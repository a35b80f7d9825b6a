//! `QueueIndex`: the per-(topic, queue) index — RocketMQ's "consume queue".
//!
//! One file per queue, `index/<topic>/<queue>.idx`, of fixed 32-byte entries at
//! `queue_offset * 32`: log position, record size, tag hash, store timestamp, and the entry's
//! own queue offset (so a stale or zeroed slot is recognised). Entries are built from the
//! commit log, so an append never waits for the index: new entries live in memory until the
//! periodic index flush writes them (O_DIRECT, whole blocks) and the checkpoint records how
//! far the index files are complete. The most recent entries also stay in memory so tailing
//! readers never read index blocks from disk.
//!
//! This module owns the entry format, the in-memory window and the block layout; it never
//! reads the commit log itself.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::config::BLOCK_BYTES;
use crate::error::{from_glommio, Result, StorageError};
use crate::ids::{LogPosition, QueueId, QueueOffset};

/// Bytes of one index entry on disk.
pub const ENTRY_BYTES: u64 = 32;
/// Entries per 4 KiB block.
const ENTRIES_PER_BLOCK: u64 = BLOCK_BYTES / ENTRY_BYTES;
/// Flushed entries kept in memory per queue for tailing readers.
const RECENT_ENTRIES_KEPT: u64 = 1024;
const _: () = assert!(BLOCK_BYTES % ENTRY_BYTES == 0);
const _: () = assert!(RECENT_ENTRIES_KEPT >= ENTRIES_PER_BLOCK);

/// Where a message sits in the commit log, and what a reader may filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Record position in the shard's commit log.
    pub position: LogPosition,
    /// Record size in bytes.
    pub size: u32,
    /// Hash of the record's tag (`record::tag_hash`).
    pub tag_hash: u32,
    /// Store timestamp.
    pub store_timestamp_ms: i64,
}

impl IndexEntry {
    /// Log position just past the record.
    pub fn end(&self) -> u64 {
        self.position.0 + self.size as u64
    }

    fn encode(&self, queue_offset: u64, out: &mut [u8]) {
        out[0..8].copy_from_slice(&self.position.0.to_le_bytes());
        out[8..12].copy_from_slice(&self.size.to_le_bytes());
        out[12..16].copy_from_slice(&self.tag_hash.to_le_bytes());
        out[16..24].copy_from_slice(&self.store_timestamp_ms.to_le_bytes());
        out[24..32].copy_from_slice(&queue_offset.to_le_bytes());
    }

    /// Decodes the entry for `queue_offset`; `None` if the slot is empty or not that offset's.
    fn decode(queue_offset: u64, bytes: &[u8]) -> Option<IndexEntry> {
        let u64_at = |at: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(raw)
        };
        let u32_at = |at: usize| {
            let mut raw = [0u8; 4];
            raw.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(raw)
        };
        let entry = IndexEntry {
            position: LogPosition(u64_at(0)),
            size: u32_at(8),
            tag_hash: u32_at(12),
            store_timestamp_ms: u64_at(16) as i64,
        };
        (entry.size != 0 && u64_at(24) == queue_offset).then_some(entry)
    }
}

/// A block write prepared by [`QueueIndex::prepare_flush`].
pub(crate) struct IndexFlush {
    pub(crate) file: Rc<DmaFile>,
    pub(crate) file_position: u64,
    pub(crate) buffer: glommio::io::DmaBuffer,
    pub(crate) flushed_to: u64,
}

/// A disk read of index entries prepared by [`QueueIndex::read_plan`].
pub(crate) struct IndexRead {
    pub(crate) file: Rc<DmaFile>,
    pub(crate) first_offset: u64,
    pub(crate) count: u64,
}

/// One queue's index.
pub(crate) struct QueueIndex {
    pub(crate) topic: Rc<str>,
    pub(crate) queue: QueueId,
    path: PathBuf,
    file: Rc<DmaFile>,
    /// First offset still stored (retention moves it up).
    min_offset: u64,
    /// Offset the next appended record gets.
    next_offset: u64,
    /// Entries below this are written to the file.
    flushed_offset: u64,
    /// Entries were written to the file since its last fdatasync.
    unsynced: bool,
    /// Offset of `recent[0]`.
    recent_base: u64,
    recent: VecDeque<IndexEntry>,
}

impl QueueIndex {
    /// Path of a queue's index file under the shard's `index/` directory.
    pub(crate) fn path_for(index_dir: &std::path::Path, topic: &str, queue: QueueId) -> PathBuf {
        index_dir.join(topic).join(format!("{}.idx", queue.0))
    }

    /// Opens (creating if needed) a queue's index whose entries `[min_offset, next_offset)`
    /// are in the file. Returns `None` when the file does not hold them (deleted or damaged
    /// index: the caller rebuilds from the log).
    pub(crate) async fn open(
        index_dir: &std::path::Path,
        topic: Rc<str>,
        queue: QueueId,
        min_offset: u64,
        next_offset: u64,
    ) -> Result<Option<QueueIndex>> {
        let path = Self::path_for(index_dir, &topic, queue);
        if next_offset > min_offset && !path.exists() {
            return Ok(None);
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| StorageError::io("create index directory", parent, error))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&path)
            .await
            .map_err(|error| StorageError::io("open index file", &path, from_glommio(error)))?;
        let mut index = QueueIndex {
            topic,
            queue,
            path,
            file: Rc::new(file),
            min_offset,
            next_offset,
            flushed_offset: next_offset,
            unsynced: false,
            recent_base: next_offset,
            recent: VecDeque::new(),
        };
        if next_offset > min_offset {
            // Load the last block's entries so appends can rewrite it and tails read it.
            let first = (next_offset - 1) / ENTRIES_PER_BLOCK * ENTRIES_PER_BLOCK;
            let first = first.max(min_offset);
            let plan = IndexRead {
                file: index.file.clone(),
                first_offset: first,
                count: next_offset - first,
            };
            let mut loaded = Vec::new();
            if read_entries(&plan, &index.path, &mut loaded).await.is_err()
                || loaded.len() as u64 != next_offset - first
            {
                return Ok(None);
            }
            index.recent_base = first;
            index.recent.extend(loaded);
        }
        Ok(Some(index))
    }

    /// First stored offset.
    pub(crate) fn min_offset(&self) -> QueueOffset {
        QueueOffset(self.min_offset)
    }

    /// Offset the next append gets.
    pub(crate) fn next_offset(&self) -> QueueOffset {
        QueueOffset(self.next_offset)
    }

    /// Adds the entry for the next offset and returns that offset.
    pub(crate) fn push(&mut self, entry: IndexEntry) -> QueueOffset {
        if self.recent.is_empty() {
            self.recent_base = self.next_offset;
        }
        self.recent.push_back(entry);
        self.next_offset += 1;
        QueueOffset(self.next_offset - 1)
    }

    /// Entries below this offset are written to the file.
    pub(crate) fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// One past the last offset whose record is durable (`end <= durable`): what readers
    /// may see.
    pub(crate) fn readable_next(&self, durable: LogPosition) -> u64 {
        let not_durable = self
            .recent
            .iter()
            .rev()
            .take_while(|entry| entry.end() > durable.0)
            .count() as u64;
        self.next_offset - not_durable
    }

    /// Store time of the newest entry, if it is in memory.
    pub(crate) fn newest_store_timestamp_ms(&self) -> Option<i64> {
        self.recent.back().map(|entry| entry.store_timestamp_ms)
    }

    /// The entry for `offset` if it is in memory.
    pub(crate) fn recent_entry(&self, offset: u64) -> Option<IndexEntry> {
        if offset < self.recent_base.max(self.min_offset) {
            return None;
        }
        self.recent
            .get((offset - self.recent_base) as usize)
            .copied()
    }

    /// Plans a disk read for entries from `offset` that are not in memory.
    pub(crate) fn read_plan(&self, offset: u64, max_count: u64) -> IndexRead {
        let end = self.recent_base.min(self.flushed_offset);
        IndexRead {
            file: self.file.clone(),
            first_offset: offset,
            count: max_count.min(end.saturating_sub(offset)),
        }
    }

    /// Path of the file (for error messages).
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The file handle (for syncing).
    pub(crate) fn file(&self) -> Rc<DmaFile> {
        self.file.clone()
    }

    /// Prepares writing every in-memory entry whose record is durable (`end <= durable`)
    /// and not yet written. The first and last blocks are rewritten whole.
    pub(crate) fn prepare_flush(&self, durable: LogPosition) -> Option<IndexFlush> {
        let unflushed_from = (self.flushed_offset - self.recent_base) as usize;
        let durable_count = self
            .recent
            .range(unflushed_from..)
            .take_while(|entry| entry.end() <= durable.0)
            .count() as u64;
        if durable_count == 0 {
            return None;
        }
        let flushed_to = self.flushed_offset + durable_count;
        let first_slot = self.flushed_offset / ENTRIES_PER_BLOCK * ENTRIES_PER_BLOCK;
        let end_slot = flushed_to.div_ceil(ENTRIES_PER_BLOCK) * ENTRIES_PER_BLOCK;
        let mut buffer =
            glommio::allocate_dma_buffer(((end_slot - first_slot) * ENTRY_BYTES) as usize);
        let bytes = buffer.as_bytes_mut();
        // Every byte is set: the entries, and zeros around them (the slots after the last
        // entry, and before the first one held in memory, which `finish_flush` keeps at or
        // before `first_slot`) — not the whole buffer zeroed first and then written again.
        let encoded_from = first_slot.max(self.recent_base);
        let slot_at = |offset: u64| ((offset - first_slot) * ENTRY_BYTES) as usize;
        bytes[..slot_at(encoded_from)].fill(0);
        for offset in encoded_from..flushed_to {
            let entry = self.recent[(offset - self.recent_base) as usize];
            let at = slot_at(offset);
            entry.encode(offset, &mut bytes[at..at + ENTRY_BYTES as usize]);
        }
        bytes[slot_at(flushed_to)..].fill(0);
        Some(IndexFlush {
            file: self.file.clone(),
            file_position: first_slot * ENTRY_BYTES,
            buffer,
            flushed_to,
        })
    }

    /// Records that a flush prepared by [`Self::prepare_flush`] completed (the file is
    /// unsynced until [`Self::note_synced`]), and lets go of in-memory entries that are in
    /// the file and no longer among the most recent: an O_DIRECT write that completed is
    /// readable, synced or not.
    pub(crate) fn finish_flush(&mut self, flushed_to: u64) {
        self.flushed_offset = self.flushed_offset.max(flushed_to);
        self.unsynced = true;
        let keep_from = (self.flushed_offset / ENTRIES_PER_BLOCK * ENTRIES_PER_BLOCK)
            .min(self.next_offset.saturating_sub(RECENT_ENTRIES_KEPT));
        while self.recent_base < keep_from && !self.recent.is_empty() {
            self.recent.pop_front();
            self.recent_base += 1;
        }
    }

    /// Records that the file was synced after everything written to it.
    pub(crate) fn note_synced(&mut self) {
        self.unsynced = false;
    }

    /// Whether entries were written to the file since its last sync.
    pub(crate) fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Moves the first stored offset up (retention).
    pub(crate) fn set_min_offset(&mut self, min_offset: u64) {
        self.min_offset = self.min_offset.max(min_offset.min(self.next_offset));
    }
}

/// Reads `plan.count` entries from disk starting at `plan.first_offset`. Stops at the first
/// empty or foreign slot.
pub(crate) async fn read_entries(
    plan: &IndexRead,
    path: &std::path::Path,
    out: &mut Vec<IndexEntry>,
) -> Result<()> {
    if plan.count == 0 {
        return Ok(());
    }
    let start = plan.first_offset * ENTRY_BYTES;
    let aligned_start = start / BLOCK_BYTES * BLOCK_BYTES;
    let end = (plan.first_offset + plan.count) * ENTRY_BYTES;
    let aligned_end = end.div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    let read = plan
        .file
        .read_at_aligned(aligned_start, (aligned_end - aligned_start) as usize)
        .await
        .map_err(|error| StorageError::io("read index file", path, from_glommio(error)))?;
    for offset in plan.first_offset..plan.first_offset + plan.count {
        let at = (offset * ENTRY_BYTES - aligned_start) as usize;
        let Some(slot) = read.get(at..at + ENTRY_BYTES as usize) else {
            break;
        };
        match IndexEntry::decode(offset, slot) {
            Some(entry) => out.push(entry),
            None => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_foreign_slot_rejected() {
        let entry = IndexEntry {
            position: LogPosition(4096 * 3 + 17),
            size: 250,
            tag_hash: 77,
            store_timestamp_ms: 1_700_000_000_000,
        };
        let mut slot = [0u8; ENTRY_BYTES as usize];
        entry.encode(9, &mut slot);
        assert_eq!(IndexEntry::decode(9, &slot), Some(entry));
        assert_eq!(IndexEntry::decode(10, &slot), None);
        assert_eq!(IndexEntry::decode(9, &[0u8; 32]), None);
    }
}
