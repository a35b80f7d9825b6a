//! `TailCache`: the most recent write buffers of a shard's log, kept after they were written,
//! so that tailing readers are served from memory and cause no disk reads.
//!
//! Every buffer the writer hands to the disk is kept here (shared, not copied) until the
//! cache's byte budget forces the oldest out. Consecutive buffers overlap by at most one
//! block: a new buffer starts with a copy of the previous one's partial last block.

use std::collections::VecDeque;
use std::rc::Rc;

use glommio::io::DmaBuffer;

use crate::ids::LogPosition;

struct CachedWrite {
    /// Log position of `buffer[0]` (block aligned).
    start: u64,
    /// Log position just past the last record byte in `buffer`.
    data_end: u64,
    buffer: Rc<DmaBuffer>,
}

/// Recent log bytes, by position.
pub(crate) struct TailCache {
    writes: VecDeque<CachedWrite>,
    capacity_bytes: usize,
    held_bytes: usize,
    /// Evicted buffers kept for reuse as write buffers, none shorter than `min_spare_bytes`.
    spare: Vec<DmaBuffer>,
    min_spare_bytes: usize,
}

/// Most evicted buffers kept for reuse.
const MAX_SPARE_BUFFERS: usize = 32;

impl TailCache {
    /// A cache of `capacity_bytes` that keeps evicted buffers of at least `min_spare_bytes`
    /// for reuse. Shorter ones are freed: the writer asks for buffers of about the full write
    /// size, so short spares would only take the places of useful ones.
    pub(crate) fn new(capacity_bytes: usize, min_spare_bytes: usize) -> Self {
        TailCache {
            writes: VecDeque::new(),
            capacity_bytes,
            held_bytes: 0,
            spare: Vec::new(),
            min_spare_bytes,
        }
    }

    /// Keeps a buffer the writer is writing at `start`, holding records up to `data_end`.
    pub(crate) fn insert(
        &mut self,
        start: LogPosition,
        data_end: LogPosition,
        buffer: Rc<DmaBuffer>,
    ) {
        if let Some(last) = self.writes.back() {
            assert!(start.0 >= last.start, "tail cache writes out of order");
            // A segment roll leaves a gap; a rewrite of the partial block overlaps.
        }
        self.held_bytes += buffer.len();
        self.writes.push_back(CachedWrite {
            start: start.0,
            data_end: data_end.0,
            buffer,
        });
        while self.held_bytes > self.capacity_bytes && self.writes.len() > 1 {
            if let Some(oldest) = self.writes.pop_front() {
                self.held_bytes -= oldest.buffer.len();
                // Reuse the memory when no write or reader holds it any more: fresh buffers
                // cost a page fault per 4 KiB on first touch.
                if let Ok(buffer) = Rc::try_unwrap(oldest.buffer) {
                    self.keep_spare(buffer);
                }
            }
        }
    }

    /// Keeps `buffer` for reuse if it is long enough, in place of the shortest spare when
    /// there are already [`MAX_SPARE_BUFFERS`]. (A buffer written whole blocks only is
    /// trimmed to them, so spares shrink a little with each use.)
    fn keep_spare(&mut self, buffer: DmaBuffer) {
        if buffer.len() < self.min_spare_bytes {
            return;
        }
        if self.spare.len() < MAX_SPARE_BUFFERS {
            self.spare.push(buffer);
            return;
        }
        let shortest = (0..self.spare.len())
            .min_by_key(|&at| self.spare[at].len())
            .expect("MAX_SPARE_BUFFERS is not zero");
        if self.spare[shortest].len() < buffer.len() {
            self.spare[shortest] = buffer;
        }
    }

    /// A spare holding at least `min_len` and at most `max_len` bytes, if there is one. The
    /// upper bound keeps a large spare from backing a small write, whose trimmed length is all
    /// the cache would count of it.
    pub(crate) fn take_spare(&mut self, min_len: usize, max_len: usize) -> Option<DmaBuffer> {
        let at = self
            .spare
            .iter()
            .position(|buffer| (min_len..=max_len).contains(&buffer.len()))?;
        Some(self.spare.swap_remove(at))
    }

    /// Whether the cache holds all of the bytes `[position, position + len)` now.
    pub(crate) fn contains(&self, position: LogPosition, len: usize) -> bool {
        self.walk(position, len, |_| {})
    }

    /// Appends the bytes `[position, position + len)` to `out` if the cache holds all of
    /// them. A record may span two buffers (a full buffer is written up to its last whole
    /// block and the next one starts with the rest).
    pub(crate) fn copy_into(&self, position: LogPosition, len: usize, out: &mut Vec<u8>) -> bool {
        let out_start = out.len();
        let whole = self.walk(position, len, |piece| out.extend_from_slice(piece));
        if !whole {
            out.truncate(out_start);
        }
        whole
    }

    /// Hands `piece` the cached pieces of `[position, position + len)` in order; false (after
    /// some pieces, maybe) as soon as a byte of it is not cached.
    fn walk(&self, position: LogPosition, len: usize, mut piece: impl FnMut(&[u8])) -> bool {
        let end = position.0 + len as u64;
        let newest_before = self
            .writes
            .partition_point(|write| write.start <= position.0);
        let Some(mut index) = newest_before.checked_sub(1) else {
            return false;
        };
        let mut at = position.0;
        while at < end {
            let Some(write) = self.writes.get(index) else {
                return false;
            };
            if write.start > at || write.data_end <= at {
                return false;
            }
            let upto = end.min(write.data_end);
            let from = (at - write.start) as usize;
            piece(&write.buffer.as_bytes()[from..(upto - write.start) as usize]);
            at = upto;
            index += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(start: u64, len: usize) -> Rc<DmaBuffer> {
        let mut buffer = glommio::allocate_dma_buffer_global(len);
        for (at, byte) in buffer.as_bytes_mut().iter_mut().enumerate() {
            *byte = ((start + at as u64) % 251) as u8;
        }
        Rc::new(buffer)
    }

    fn expected(position: u64, len: usize) -> Vec<u8> {
        (position..position + len as u64)
            .map(|at| (at % 251) as u8)
            .collect()
    }

    #[test]
    fn record_spanning_two_buffers_is_copied_whole() {
        let mut cache = TailCache::new(1 << 20, 4096);
        cache.insert(LogPosition(0), LogPosition(8192), buffer(0, 8192));
        cache.insert(LogPosition(8192), LogPosition(12_000), buffer(8192, 12_288));
        let mut out = vec![9];
        assert!(cache.copy_into(LogPosition(8000), 1000, &mut out));
        assert_eq!(&out[1..], &expected(8000, 1000)[..]);
        // Past what the newest buffer holds: refused, and `out` is left as it was.
        assert!(!cache.copy_into(LogPosition(11_900), 200, &mut out));
        assert_eq!(out.len(), 1001);
    }

    #[test]
    fn oldest_buffers_are_evicted_beyond_the_budget() {
        let mut cache = TailCache::new(8192, 4096);
        cache.insert(LogPosition(0), LogPosition(4096), buffer(0, 4096));
        cache.insert(LogPosition(4096), LogPosition(8192), buffer(4096, 4096));
        cache.insert(LogPosition(8192), LogPosition(12_288), buffer(8192, 4096));
        let mut out = Vec::new();
        assert!(!cache.copy_into(LogPosition(0), 10, &mut out));
        assert!(cache.copy_into(LogPosition(8190), 10, &mut out));
        assert_eq!(out, expected(8190, 10));
    }

    #[test]
    fn evicted_buffers_are_reused_by_size_and_short_ones_are_freed() {
        let mut cache = TailCache::new(4096, 8192);
        let mut at = 0;
        for len in [16_384, 4096, 12_288, 4096] {
            cache.insert(
                LogPosition(at),
                LogPosition(at + len),
                buffer(at, len as usize),
            );
            at += len;
        }
        // Evicted: 16 KiB and 12 KiB are kept; the 4 KiB one is shorter than 8 KiB and freed.
        assert_eq!(cache.spare.len(), 2);
        assert!(cache.take_spare(20_000, 40_000).is_none());
        // Too long for a 4 KiB request: a small write must not pin a large allocation.
        assert!(cache.take_spare(4096, 8192).is_none());
        assert_eq!(
            cache.take_spare(10_000, 16_384).map(|b| b.len()),
            Some(16_384)
        );
        assert_eq!(
            cache.take_spare(10_000, 16_384).map(|b| b.len()),
            Some(12_288)
        );
        assert!(cache.take_spare(0, usize::MAX).is_none());
    }

    #[test]
    fn a_full_spare_list_keeps_the_longest_buffers() {
        let mut cache = TailCache::new(1 << 30, 4096);
        for _ in 0..MAX_SPARE_BUFFERS {
            cache.keep_spare(glommio::allocate_dma_buffer_global(4096));
        }
        cache.keep_spare(glommio::allocate_dma_buffer_global(8192));
        assert_eq!(cache.spare.len(), MAX_SPARE_BUFFERS);
        assert_eq!(cache.take_spare(8192, 8192).map(|b| b.len()), Some(8192));
    }
}
