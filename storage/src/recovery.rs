//! Recovery: finding where a shard's commit log really ends after a restart.
//!
//! [`LogScanner`] walks the segments record by record from a start position, verifying both
//! CRCs of every record and that its stamped log position is where it was found. Where no
//! valid record starts, one of three things is true:
//!
//! * the bytes after it (as far as the torn-tail window reaches) are zeros, never written: the log continues at the
//!   next segment, or ends here if this is the last one;
//! * it is a **torn tail**: writes that were in flight at a crash. No valid record starts
//!   more than `torn_tail_window_bytes` past the bad spot, because the writer never has more
//!   than that unsynced. The log is cut at the last valid record, the rest of the segment is
//!   zeroed and later segments are deleted, so stale records can never reappear;
//! * it is **damage before the tail**: valid records exist further on. Nothing acknowledged
//!   may be dropped silently, so recovery refuses ([`StorageError::DamagedLog`]) unless the
//!   operator asked for repair, which cuts the log there.
//!
//! This module reads and cuts files; it does not know about queues or indexes.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use crate::commit_log::{
    align_down, align_up, open_segment_file, parse_segment_file_name, Segment,
};
use crate::config::{StorageConfig, BLOCK_BYTES};
use crate::error::{from_glommio, Result, StorageError};
use crate::ids::LogPosition;
use crate::record::{peek_total_length, stamped_log_position, RecordView, MAGIC};

/// Bytes read per recovery read.
const SCAN_CHUNK_BYTES: usize = 4 << 20;

/// Opens every segment file in `dir`, sorted by start position.
pub(crate) async fn open_segments(
    config: &StorageConfig,
    dir: &std::path::Path,
) -> Result<BTreeMap<u64, Segment>> {
    let entries =
        std::fs::read_dir(dir).map_err(|error| StorageError::io("list commit log", dir, error))?;
    let mut segments = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|error| StorageError::io("list commit log", dir, error))?;
        let name = entry.file_name();
        let Some(start) = name.to_str().and_then(parse_segment_file_name) else {
            tracing::warn!(file = ?entry.path(), "ignoring a file that is not a segment");
            continue;
        };
        if start % config.segment_size_bytes != 0 {
            return Err(StorageError::Config {
                key: "segment_size_bytes",
                reason: format!(
                    "segment {} does not start at a multiple of {}; was the segment size changed?",
                    entry.path().display(),
                    config.segment_size_bytes
                ),
            });
        }
        let path = entry.path();
        let file = open_segment_file(&path, false, config.segment_size_bytes).await?;
        let modified_ms = entry
            .metadata()
            .ok()
            .and_then(|metadata| metadata.modified().ok())
            .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |age| age.as_millis() as i64);
        segments.insert(
            start,
            Segment {
                start,
                path,
                file: Some(Rc::new(file)),
                newest_store_timestamp_ms: modified_ms,
            },
        );
    }
    Ok(segments)
}

/// What [`LogScanner::next`] found.
pub(crate) enum ScanStep<'a> {
    /// A valid record at its position.
    Record(RecordView<'a>),
    /// No valid record starts here, and the bytes after it are not all zero.
    Invalid(LogPosition),
    /// The log ends cleanly here.
    End(LogPosition),
}

/// Walks a shard's log record by record.
pub(crate) struct LogScanner<'a> {
    config: &'a StorageConfig,
    segments: &'a BTreeMap<u64, Segment>,
    position: u64,
    chunk: Vec<u8>,
    chunk_start: u64,
    /// Where a clean shutdown said the log ends: no need to prove the rest is zero.
    clean_end: Option<u64>,
    /// Bytes read so far.
    pub(crate) bytes_scanned: u64,
}

impl<'a> LogScanner<'a> {
    pub(crate) fn new(
        config: &'a StorageConfig,
        segments: &'a BTreeMap<u64, Segment>,
        start: u64,
        clean_end: Option<u64>,
    ) -> Self {
        LogScanner {
            config,
            segments,
            position: start,
            chunk: Vec::new(),
            chunk_start: 0,
            clean_end,
            bytes_scanned: 0,
        }
    }

    fn segment_of(&self, position: u64) -> &'a Segment {
        let (_, segment) = self
            .segments
            .range(..=position)
            .next_back()
            .expect("scan position inside a segment");
        segment
    }

    /// Makes sure `[position, position + len)` (clamped to the segment) is in the chunk.
    async fn load(&mut self, position: u64, len: usize) -> Result<()> {
        let segment = self.segment_of(position);
        let segment_end = segment.start + self.config.segment_size_bytes;
        let want_end = (position + len as u64).min(segment_end);
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if position >= self.chunk_start && want_end <= chunk_end {
            return Ok(());
        }
        let start = align_down(position);
        let end = align_up((position + (len.max(SCAN_CHUNK_BYTES)) as u64).min(segment_end));
        let file = segment.file.as_ref().expect("recovery opens every segment");
        let read = file
            .read_at_aligned(start - segment.start, (end - start) as usize)
            .await
            .map_err(|error| {
                StorageError::io("read segment", &segment.path, from_glommio(error))
            })?;
        self.bytes_scanned += read.len() as u64;
        self.chunk.clear();
        self.chunk.extend_from_slice(&read);
        // A truncated file reads short: what is missing is as good as zeros.
        self.chunk.resize((end - start) as usize, 0);
        self.chunk_start = start;
        Ok(())
    }

    fn chunk_slice(&self, position: u64) -> &[u8] {
        &self.chunk[(position - self.chunk_start) as usize..]
    }

    /// The next record, or why there is none.
    pub(crate) async fn next(&mut self) -> Result<ScanStep<'_>> {
        loop {
            let position = self.position;
            let segment = self.segment_of(position);
            let segment_end = segment.start + self.config.segment_size_bytes;
            let next_segment = self
                .segments
                .range(segment_end..)
                .next()
                .map(|(start, _)| *start);
            if self.clean_end == Some(position) && next_segment.is_none() {
                return Ok(ScanStep::End(LogPosition(position)));
            }
            if segment_end - position >= 4 {
                self.load(position, 4).await?;
                let length = peek_total_length(self.chunk_slice(position)).unwrap_or(0);
                if length > 0 && position + length as u64 <= segment_end {
                    self.load(position, length).await?;
                    let valid =
                        RecordView::parse(self.chunk_slice(position), self.config.max_record_bytes)
                            .is_ok_and(|view| view.log_position() == position);
                    if valid {
                        self.position = position + length as u64;
                        let view = RecordView::parse(
                            self.chunk_slice(position),
                            self.config.max_record_bytes,
                        )
                        .expect("checked just above");
                        return Ok(ScanStep::Record(view));
                    }
                }
            }
            // Zeros up to the torn-tail window mean nothing was ever written further on:
            // anything valid beyond it would be damage, and is looked for only once a bad
            // spot is found (reading a whole preallocated 1 GiB segment at every start
            // would cost seconds).
            let zero_check_end = segment_end.min(
                position
                    + self.config.torn_tail_window_bytes()
                    + self.config.max_record_bytes as u64,
            );
            if !self.rest_is_zero(position, zero_check_end).await? {
                return Ok(ScanStep::Invalid(LogPosition(position)));
            }
            match next_segment {
                Some(start) => self.position = start,
                None => return Ok(ScanStep::End(LogPosition(position))),
            }
        }
    }

    async fn rest_is_zero(&mut self, from: u64, to: u64) -> Result<bool> {
        let mut at = from;
        while at < to {
            self.load(at, SCAN_CHUNK_BYTES).await?;
            let available = (self.chunk_start + self.chunk.len() as u64).min(to) - at;
            if self.chunk_slice(at)[..available as usize]
                .iter()
                .any(|byte| *byte != 0)
            {
                return Ok(false);
            }
            at += available;
        }
        Ok(true)
    }

    /// First position at or after `from` where a record with a valid header starts.
    async fn find_valid_record(&mut self, from: u64) -> Result<Option<u64>> {
        let starts: Vec<u64> = self.segments.keys().copied().collect();
        for start in starts {
            let end = start + self.config.segment_size_bytes;
            if end <= from {
                continue;
            }
            let mut at = from.max(start);
            while at + 48 <= end {
                self.load(at, SCAN_CHUNK_BYTES).await?;
                let chunk_end = (self.chunk_start + self.chunk.len() as u64).min(end);
                let base = at;
                let window = &self.chunk
                    [(base - self.chunk_start) as usize..(chunk_end - self.chunk_start) as usize];
                let max_record_bytes = self.config.max_record_bytes;
                let magic = MAGIC.to_le_bytes();
                // Candidates need their 48-byte header inside the window; a candidate
                // straddling the window's end is re-examined from the next load.
                let last = window.len().saturating_sub(48);
                // A record counts only where it was written: stale bytes of an older use of
                // the space (a recycled segment, a cut tail) carry other positions.
                let found = (0..=last).find(|&offset| {
                    window[offset + 8] == magic[0]
                        && window[offset + 9] == magic[1]
                        && RecordView::header_is_valid(&window[offset..], max_record_bytes)
                        && stamped_log_position(&window[offset..]) == Some(base + offset as u64)
                });
                if let Some(offset) = found {
                    return Ok(Some(base + offset as u64));
                }
                if chunk_end >= end {
                    break;
                }
                at = base + last as u64 + 1;
            }
        }
        Ok(None)
    }

    /// Decides what an invalid spot at `bad` means (see the module docs), cuts the log there
    /// when it is a torn tail (or when `repair` is set) and returns the new end.
    pub(crate) async fn settle_tail(
        &mut self,
        bad: LogPosition,
        repair: bool,
    ) -> Result<LogPosition> {
        let window_end = bad.0 + self.config.torn_tail_window_bytes();
        let segment = self.segment_of(bad.0);
        if let Some(next_valid) = self.find_valid_record(window_end).await? {
            if !repair {
                return Err(StorageError::DamagedLog {
                    position: bad,
                    path: segment.path.clone(),
                    next_valid: LogPosition(next_valid),
                });
            }
            tracing::warn!(
                position = bad.0,
                next_valid,
                "repair: cutting the damaged log; later data is dropped"
            );
        } else {
            tracing::warn!(position = bad.0, path = %segment.path.display(), "cutting a torn tail");
        }
        self.cut(bad.0).await?;
        Ok(bad)
    }

    /// Zeroes the log from `end` to its segment's end and deletes later segments.
    async fn cut(&mut self, end: u64) -> Result<()> {
        let segment = self.segment_of(end);
        let file = segment.file.as_ref().expect("recovery opens every segment");
        let in_file = end - segment.start;
        let block_start = align_down(in_file);
        if block_start < in_file {
            self.load(end - (in_file - block_start), BLOCK_BYTES as usize)
                .await?;
            let mut block = file.alloc_dma_buffer(BLOCK_BYTES as usize);
            block.as_bytes_mut().fill(0);
            let keep = (in_file - block_start) as usize;
            block.as_bytes_mut()[..keep]
                .copy_from_slice(&self.chunk_slice(segment.start + block_start)[..keep]);
            file.write_at(block, block_start).await.map_err(|error| {
                StorageError::io("rewrite torn block", &segment.path, from_glommio(error))
            })?;
        }
        let zero_from = align_up(in_file);
        if zero_from < self.config.segment_size_bytes {
            // glommio has no zero-range call; fallocate runs synchronously, once, at recovery.
            // SAFETY: plain syscall on a file descriptor that `file` keeps open.
            let rc = unsafe {
                libc::fallocate(
                    file.as_raw_fd(),
                    libc::FALLOC_FL_ZERO_RANGE,
                    zero_from as i64,
                    (self.config.segment_size_bytes - zero_from) as i64,
                )
            };
            if rc != 0 {
                return Err(StorageError::io(
                    "zero torn tail",
                    &segment.path,
                    std::io::Error::last_os_error(),
                ));
            }
        }
        file.fdatasync().await.map_err(|error| {
            StorageError::io("sync cut segment", &segment.path, from_glommio(error))
        })?;
        let later: Vec<&Segment> = self
            .segments
            .range(segment.start + 1..)
            .map(|(_, s)| s)
            .collect();
        for doomed in later {
            std::fs::remove_file(&doomed.path).map_err(|error| {
                StorageError::io("remove segment after cut", &doomed.path, error)
            })?;
        }
        self.chunk.clear();
        Ok(())
    }

    /// The bytes `[align_down(end), end)`, for the writer to rewrite with the next append.
    pub(crate) async fn partial_block(&mut self, end: u64) -> Result<Vec<u8>> {
        let start = align_down(end);
        if start == end {
            return Ok(Vec::new());
        }
        self.load(start, (end - start) as usize).await?;
        Ok(self.chunk_slice(start)[..(end - start) as usize].to_vec())
    }
}
