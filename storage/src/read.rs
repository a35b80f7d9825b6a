//! The read path: messages of one queue from an offset, with limits and a tag filter, plus
//! offset lookups by time.
//!
//! Index entries come from memory for tailing readers and from the index file otherwise;
//! record bytes come from the tail cache or, for older data, from aligned O_DIRECT reads of
//! the segment that each cover many records, all of a read's disk reads planned first and
//! submitted together (a pull of a deep backlog no longer waits for them one by one).
//! Every record read from disk is CRC-checked and
//! must be the record its index entry names. The selected records are copied once into one
//! output buffer: no allocation per message.

use std::future::Future;
use std::task::Poll;

use crate::commit_log::CommitLog;
use crate::error::{Result, StorageError};
use crate::ids::{LogPosition, QueueId, QueueOffset};
use crate::queue_index::{read_entries, IndexEntry};
use crate::record::{tag_hash, RecordView};
use crate::store::{QueueHandle, ShardStore};

/// Largest single disk read of the read path.
const READ_SPAN_BYTES: usize = 1 << 20;
/// Disk reads of one read submitted together (each up to [`READ_SPAN_BYTES`]).
const MAX_READS_TOGETHER: usize = 8;
/// Most index entries one read examines (bounds the work of a filtered read).
const MAX_ENTRIES_EXAMINED: u64 = 16_384;
/// Most messages one read returns.
pub const MAX_READ_MESSAGES: u32 = 4_096;

/// Only messages with one of these tags (RocketMQ's `tagA || tagB`).
#[derive(Clone, Debug, Default)]
pub struct TagFilter {
    tags: Vec<Vec<u8>>,
    hashes: Vec<u32>,
}

impl TagFilter {
    /// A filter accepting any of `tags`.
    pub fn new<'a>(tags: impl IntoIterator<Item = &'a str>) -> Self {
        let tags: Vec<Vec<u8>> = tags
            .into_iter()
            .map(|tag| tag.as_bytes().to_vec())
            .collect();
        let hashes = tags.iter().map(|tag| tag_hash(tag)).collect();
        TagFilter { tags, hashes }
    }

    fn may_match(&self, hash: u32) -> bool {
        self.hashes.contains(&hash)
    }

    fn matches(&self, tag: &[u8]) -> bool {
        self.tags.iter().any(|wanted| wanted == tag)
    }
}

/// What to read.
#[derive(Clone, Debug)]
pub struct ReadRequest<'a> {
    /// Topic.
    pub topic: &'a str,
    /// Queue.
    pub queue: QueueId,
    /// First offset wanted.
    pub offset: QueueOffset,
    /// At most this many messages (capped at [`MAX_READ_MESSAGES`]).
    pub max_messages: u32,
    /// At most this many bytes, except that one message is returned whatever its size.
    pub max_bytes: u32,
    /// Only messages with these tags.
    pub tag_filter: Option<&'a TagFilter>,
}

/// How a read went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Messages (possibly none if all were filtered out) up to `next_offset`.
    Found,
    /// Nothing at or after the offset yet.
    NoNewMessages,
    /// The offset was deleted by retention; `next_offset` is the queue's minimum.
    OffsetTooSmall,
    /// The offset is past the queue's end; `next_offset` is the queue's end.
    OffsetTooLarge,
}

/// Where one message sits in [`ReadBatch::bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRecord {
    /// Its queue offset.
    pub queue_offset: QueueOffset,
    /// Start in `bytes`.
    pub start: u32,
    /// Length in `bytes`.
    pub len: u32,
}

/// Messages read: stored record bytes, back to back, and where each one is.
#[derive(Clone, Debug)]
pub struct ReadBatch {
    /// Outcome.
    pub status: ReadStatus,
    /// The records, as stored.
    pub bytes: Vec<u8>,
    /// One entry per record in `bytes`.
    pub records: Vec<ReadRecord>,
    /// Offset to read from next.
    pub next_offset: QueueOffset,
    /// Queue's first stored offset.
    pub min_offset: QueueOffset,
    /// Queue's end (one past its last readable offset).
    pub max_offset: QueueOffset,
}

impl ReadBatch {
    /// The records, parsed (they were verified when read).
    pub fn iter(&self) -> impl Iterator<Item = RecordView<'_>> {
        self.records.iter().map(|record| {
            let bytes = &self.bytes[record.start as usize..(record.start + record.len) as usize];
            RecordView::parse(bytes, usize::MAX).expect("records were verified when read")
        })
    }
}

/// Bytes from the first entry's position to the end of the last entry that follows it
/// back to back in the log.
fn contiguous_run_bytes(entries: &[IndexEntry]) -> usize {
    let Some(first) = entries.first() else {
        return 0;
    };
    let mut end = first.position.0 + u64::from(first.size);
    for entry in &entries[1..] {
        if entry.position.0 != end || end - first.position.0 >= READ_SPAN_BYTES as u64 {
            break;
        }
        end += u64::from(entry.size);
    }
    (end - first.position.0) as usize
}

/// How many bytes to read from the disk for the record of `entries[0]`: the run of this
/// queue's records that lie back to back from it (one producer batch, usually), not a fixed
/// window: queues interleave in the log, and a fixed window was mostly other queues'
/// records (a quarter useful with four queues per shard).
fn span_bytes(entries: &[IndexEntry]) -> usize {
    let len = entries[0].size as usize;
    contiguous_run_bytes(entries).clamp(len, READ_SPAN_BYTES.max(len))
}

/// Bytes of the log read from disk: `read` holds them from `start - skip` (aligned).
#[derive(Clone)]
struct Span {
    start: u64,
    read: glommio::io::ReadResult,
    skip: usize,
    path: std::path::PathBuf,
}

impl Span {
    async fn read(log: &CommitLog, start: u64, len: usize) -> Result<Span> {
        let (read, skip, path) = log.read_from_disk(start, len).await?;
        Ok(Span {
            start,
            read,
            skip,
            path,
        })
    }

    /// Whether the record of `len` bytes at `position` is all in this span.
    fn covers(&self, position: LogPosition, len: usize) -> bool {
        position.0 >= self.start
            && position.0 + len as u64 <= self.start + (self.read.len() - self.skip) as u64
    }
}

/// Reads the planned spans `(start, len)`, [`MAX_READS_TOGETHER`] at a time: every read of
/// a group is submitted before any is waited for, so a pull of many scattered producer
/// batches costs about one disk round trip per group, not one per batch.
async fn read_together(log: &CommitLog, plan: &[(u64, usize)]) -> Result<Vec<Span>> {
    let mut spans = Vec::with_capacity(plan.len());
    for group in plan.chunks(MAX_READS_TOGETHER) {
        let mut reads: Vec<_> = group
            .iter()
            .map(|&(start, len)| Box::pin(Span::read(log, start, len)))
            .collect();
        let mut done: Vec<Option<Result<Span>>> = group.iter().map(|_| None).collect();
        futures_lite::future::poll_fn(|context| {
            let mut waiting = false;
            for (read, done) in reads.iter_mut().zip(done.iter_mut()) {
                if done.is_none() {
                    match read.as_mut().poll(context) {
                        Poll::Ready(result) => *done = Some(result),
                        Poll::Pending => waiting = true,
                    }
                }
            }
            if waiting {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        for result in done {
            spans.push(result.expect("every read was polled to completion")?);
        }
    }
    Ok(spans)
}

impl ShardStore {
    /// The disk reads (start, length) a read of `entries` will need, in log order of first
    /// use: the records the limits let through (each taken to pass the tag filter if its
    /// hash does) that the tail cache does not hold now, one span per back-to-back run.
    fn plan_disk_reads(
        &self,
        entries: &[IndexEntry],
        max_messages: u64,
        byte_budget: usize,
        tag_filter: Option<&TagFilter>,
    ) -> Vec<(u64, usize)> {
        let state = self.inner.log.state.borrow();
        let mut plan: Vec<(u64, usize)> = Vec::new();
        let (mut messages, mut bytes) = (0u64, 0usize);
        for (index, entry) in entries.iter().enumerate() {
            let len = entry.size as usize;
            if messages >= max_messages || (messages > 0 && bytes + len > byte_budget) {
                break;
            }
            if tag_filter.is_some_and(|filter| !filter.may_match(entry.tag_hash)) {
                continue;
            }
            messages += 1;
            bytes += len;
            let planned = plan.last().is_some_and(|&(start, planned_len)| {
                entry.position.0 >= start
                    && entry.position.0 + len as u64 <= start + planned_len as u64
            });
            if !planned && !state.tail_cache.contains(entry.position, len) {
                plan.push((entry.position.0, span_bytes(&entries[index..])));
            }
        }
        plan
    }

    /// The queue's first stored offset and its end (one past the last readable offset).
    pub fn queue_offsets(&self, topic: &str, queue: QueueId) -> Result<(QueueOffset, QueueOffset)> {
        let handle = self.queue_or_not_found(topic, queue)?;
        let index = handle.borrow();
        let durable = self.inner.log.durable();
        Ok((
            index.min_offset(),
            QueueOffset(index.readable_next(durable)),
        ))
    }

    /// Index entries `[from, from + count)` (fewer if they run out), from memory or disk.
    async fn entries(
        &self,
        handle: &QueueHandle,
        from: u64,
        count: u64,
        out: &mut Vec<IndexEntry>,
    ) -> Result<()> {
        let end = from + count;
        let mut offset = from;
        while offset < end {
            if let Some(entry) = handle.borrow().recent_entry(offset) {
                out.push(entry);
                offset += 1;
                continue;
            }
            let (plan, path) = {
                let index = handle.borrow();
                (
                    index.read_plan(offset, end - offset),
                    index.path().to_path_buf(),
                )
            };
            if plan.count == 0 {
                break;
            }
            let before = out.len();
            read_entries(&plan, &path, out).await?;
            let got = (out.len() - before) as u64;
            if got < plan.count {
                return Err(StorageError::io(
                    "read index",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("entry for offset {} missing or damaged", offset + got),
                    ),
                ));
            }
            offset += got;
        }
        Ok(())
    }

    /// The entry of one offset.
    async fn entry(&self, handle: &QueueHandle, offset: u64) -> Result<IndexEntry> {
        let mut out = Vec::with_capacity(1);
        self.entries(handle, offset, 1, &mut out).await?;
        Ok(out[0])
    }

    /// Reads messages of a queue.
    pub async fn read(&self, request: &ReadRequest<'_>) -> Result<ReadBatch> {
        let handle = self.queue_or_not_found(request.topic, request.queue)?;
        let durable = self.inner.log.durable();
        let (min_offset, readable_next) = {
            let index = handle.borrow();
            (index.min_offset().0, index.readable_next(durable))
        };
        let mut batch = ReadBatch {
            status: ReadStatus::Found,
            bytes: Vec::new(),
            records: Vec::new(),
            next_offset: request.offset,
            min_offset: QueueOffset(min_offset),
            max_offset: QueueOffset(readable_next),
        };
        let offset = request.offset.0;
        if offset < min_offset {
            batch.status = ReadStatus::OffsetTooSmall;
            batch.next_offset = QueueOffset(min_offset);
            return Ok(batch);
        }
        if offset > readable_next {
            batch.status = ReadStatus::OffsetTooLarge;
            batch.next_offset = QueueOffset(readable_next);
            return Ok(batch);
        }
        if offset == readable_next {
            batch.status = ReadStatus::NoNewMessages;
            return Ok(batch);
        }
        let max_messages = request.max_messages.clamp(1, MAX_READ_MESSAGES) as u64;
        let examine = if request.tag_filter.is_some() {
            MAX_ENTRIES_EXAMINED
        } else {
            max_messages
        };
        let mut entries = Vec::with_capacity(examine.min(readable_next - offset) as usize);
        self.entries(
            &handle,
            offset,
            examine.min(readable_next - offset),
            &mut entries,
        )
        .await?;
        let byte_budget = request.max_bytes as usize;
        batch
            .bytes
            .reserve(byte_budget.min(entries.iter().map(|entry| entry.size as usize).sum()));
        // The disk reads this read will need, issued together before any is waited for.
        let plan = self.plan_disk_reads(&entries, max_messages, byte_budget, request.tag_filter);
        let prefetched = read_together(&self.inner.log, &plan).await?;
        let mut span: Option<Span> = None;
        for (index, entry) in entries.iter().enumerate() {
            let queue_offset = offset + index as u64;
            if batch.records.len() as u64 >= max_messages
                || (!batch.records.is_empty()
                    && batch.bytes.len() + entry.size as usize > byte_budget)
            {
                break;
            }
            batch.next_offset = QueueOffset(queue_offset + 1);
            if let Some(filter) = request.tag_filter {
                if !filter.may_match(entry.tag_hash) {
                    continue;
                }
            }
            let start = batch.bytes.len();
            let len = entry.size as usize;
            let cached = self.inner.log.state.borrow().tail_cache.copy_into(
                entry.position,
                len,
                &mut batch.bytes,
            );
            if !cached {
                if !span
                    .as_ref()
                    .is_some_and(|span| span.covers(entry.position, len))
                {
                    span = match prefetched
                        .iter()
                        .find(|span| span.covers(entry.position, len))
                    {
                        Some(prefetched) => Some(prefetched.clone()),
                        // Left the tail cache since the plan was made: read it now.
                        None => {
                            let want = span_bytes(&entries[index..]);
                            Some(Span::read(&self.inner.log, entry.position.0, want).await?)
                        }
                    };
                }
                let span = span.as_ref().expect("span loaded above");
                let at = span.skip + (entry.position.0 - span.start) as usize;
                let Some(bytes) = span.read.get(at..at + len) else {
                    return Err(corrupt_short(entry.position, &span.path));
                };
                batch.bytes.extend_from_slice(bytes);
            }
            // Pair assertion: every record served is verified, from memory or disk.
            let view = RecordView::parse(&batch.bytes[start..], self.inner.config.max_record_bytes)
                .map_err(|source| StorageError::Corrupt {
                    position: entry.position,
                    path: self.inner.log.dir.clone(),
                    source,
                })?;
            if view.queue_offset() != queue_offset
                || view.log_position() != entry.position.0
                || view.queue_id() != request.queue.0
            {
                return Err(StorageError::Corrupt {
                    position: entry.position,
                    path: self.inner.log.dir.clone(),
                    source: crate::record::RecordError::BadField {
                        field: "queue_offset",
                        reason: "record is not the one its index entry names",
                    },
                });
            }
            if let Some(filter) = request.tag_filter {
                if !filter.matches(view.tag()) {
                    batch.bytes.truncate(start);
                    continue;
                }
            }
            batch.records.push(crate::read::ReadRecord {
                queue_offset: QueueOffset(queue_offset),
                start: start as u32,
                len: len as u32,
            });
        }
        Ok(batch)
    }

    /// The first offset whose store time is at or after `timestamp_ms` (the queue's end if
    /// none is).
    pub async fn offset_for_timestamp(
        &self,
        topic: &str,
        queue: QueueId,
        timestamp_ms: i64,
    ) -> Result<QueueOffset> {
        let handle = self.queue_or_not_found(topic, queue)?;
        let durable = self.inner.log.durable();
        let (mut low, mut high) = {
            let index = handle.borrow();
            (index.min_offset().0, index.readable_next(durable))
        };
        // Store times never decrease within a shard, so the entries are sorted by them.
        while low < high {
            let middle = low + (high - low) / 2;
            if self.entry(&handle, middle).await?.store_timestamp_ms < timestamp_ms {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(QueueOffset(low))
    }

    /// The first offset of `handle`'s queue whose record starts at or after `position`.
    pub(crate) async fn first_offset_at_or_after(
        &self,
        handle: &QueueHandle,
        position: LogPosition,
    ) -> Result<u64> {
        let (mut low, mut high) = {
            let index = handle.borrow();
            (index.min_offset().0, index.next_offset().0)
        };
        while low < high {
            let middle = low + (high - low) / 2;
            if self.entry(handle, middle).await?.position < position {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }
}

fn corrupt_short(position: LogPosition, path: &std::path::Path) -> StorageError {
    StorageError::Corrupt {
        position,
        path: path.to_path_buf(),
        source: crate::record::RecordError::Truncated {
            needed: 0,
            available: 0,
        },
    }
}
