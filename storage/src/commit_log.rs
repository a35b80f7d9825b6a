//! `CommitLog`: one shard's append-only log of records in segment files, its group-commit
//! writer and its flush (fdatasync) policy.
//!
//! Write path, in order (DURABILITY.md numbers the same steps):
//! 1. An append copies each validated record into the *active* buffer (aligned DMA memory)
//!    and stamps it there; no I/O yet. Appends arriving while a write is in flight gather in
//!    the active buffer: that is the group commit.
//! 2. The writer task seals the active buffer (zero-padding it to a block), starts the next
//!    one with a copy of the partial last block, and writes the sealed buffer with one
//!    O_DIRECT io_uring write at its aligned position. Writes are issued one at a time, in
//!    log order, so `written` only ever grows contiguously.
//! 3. `sync` mode: the syncer task runs one fdatasync covering everything written so far
//!    (every segment file touched), then moves `durable` up; the writer keeps writing the
//!    next group meanwhile, at most two buffers ahead of the last sync. `async` mode: `durable`
//!    follows `written`, and fdatasync runs every `flush_interval_ms`.
//! 4. Append futures resolve once `durable` covers their last byte.
//!
//! Written buffers are kept in the [`TailCache`] for readers. This module knows nothing of
//! queues: the store stamps records and keeps the indexes.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::config::{FlushMode, StorageConfig, BLOCK_BYTES};
use crate::error::{from_glommio, Result, StorageError};
use crate::ids::LogPosition;
use crate::next_segment::NextSegment;
use crate::signal::Signal;
use crate::tail_cache::TailCache;
use crate::ticket_line::TicketLine;
use crate::zero_fill::ZeroFill;

/// Smallest active buffer; buffers grow towards `write_buffer_bytes` under load.
const MIN_BUFFER_BYTES: usize = 64 << 10;
/// Writes in flight at once (they never overlap: see [`Seal::Full`]).
pub(crate) const MAX_WRITES_IN_FLIGHT: usize = 8;
/// Sealed buffers waiting for the writer before appends have to wait.
const PENDING_LIMIT_BUFFERS: usize = 8;
/// In `sync` mode, how many write buffers' worth may be issued beyond the last fdatasync.
pub(crate) const MAX_UNSYNCED_BUFFERS: u64 = 8;

pub(crate) fn align_down(value: u64) -> u64 {
    value / BLOCK_BYTES * BLOCK_BYTES
}

pub(crate) fn align_up(value: u64) -> u64 {
    value.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// File name of the segment starting at `start`.
pub(crate) fn segment_file_name(start: u64) -> String {
    format!("{start:020}.log")
}

/// Parses a segment file name back into its start position.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One segment file of the log.
pub(crate) struct Segment {
    pub(crate) start: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Option<Rc<DmaFile>>,
    /// Store time of the newest record in it (drives age-based retention).
    pub(crate) newest_store_timestamp_ms: i64,
}

struct ActiveBuffer {
    /// Log position of `buffer[0]` (block aligned).
    start: u64,
    segment_start: u64,
    buffer: DmaBuffer,
    len: usize,
    /// Bytes at the front copied from the previous buffer that are already on disk.
    carried: usize,
}

/// Why the active buffer is sealed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seal {
    /// The next record does not fit.
    Full,
    /// The writer is idle and writes what there is.
    Flush,
    /// The log moves to a new segment.
    Roll,
}

struct InFlight {
    data_end: u64,
    done: bool,
}

struct PendingWrite {
    start: u64,
    data_end: u64,
    segment_start: u64,
    buffer: DmaBuffer,
}

pub(crate) struct LogState {
    pub(crate) segments: BTreeMap<u64, Segment>,
    active: Option<ActiveBuffer>,
    pending: VecDeque<PendingWrite>,
    pending_bytes: usize,
    /// Where the next record goes.
    pub(crate) append_end: u64,
    /// Everything below is written (O_DIRECT write completed).
    pub(crate) written: u64,
    /// Everything below is covered by an fdatasync.
    synced: u64,
    /// Everything below counts as durable for the flush mode: append futures resolve here.
    pub(crate) durable: u64,
    dirty_files: Vec<(u64, Rc<DmaFile>)>,
    /// Writes issued and not yet all completed, in log order.
    in_flight: VecDeque<InFlight>,
    /// Ticket of `in_flight[0]`.
    first_in_flight_ticket: u64,
    /// End of the data of the last write issued.
    issued_end: u64,
    /// End of the last write issued, padding included.
    issued_block_end: u64,
    pub(crate) tail_cache: TailCache,
    pub(crate) failure: Option<String>,
    pub(crate) closing: bool,
    /// The segment after the current one, created ahead of the roll.
    pub(crate) next_segment: NextSegment,
    /// How far the prepared segment is zero-filled.
    pub(crate) zero_fill: ZeroFill,
    next_buffer_bytes: usize,
    max_buffer_bytes: usize,
    pub(crate) stats: LogStats,
}

/// Counters of the commit log's writer, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// O_DIRECT writes issued.
    pub writes: u64,
    /// Bytes those writes carried (padding and rewritten partial blocks included).
    pub bytes_written: u64,
    /// fdatasync calls on segment files.
    pub syncs: u64,
    /// Segment files created ahead of their roll, off the write path.
    pub segments_created_ahead: u64,
    /// Segment files the writer had to create itself at the roll (the one ahead was not
    /// ready), stalling appends meanwhile.
    pub segments_created_at_roll: u64,
    /// Write buffers allocated fresh (each page faults on first touch); the others reuse a
    /// buffer the tail cache let go of.
    pub buffers_allocated: u64,
    /// Zero writes issued to prepared segments in the log's idle moments (see `zero_fill`).
    pub zero_writes_issued: u64,
    /// Zero writes completed (failed ones included).
    pub zero_writes_completed: u64,
    /// Bytes those writes zero-filled.
    pub bytes_zero_filled: u64,
    /// Times the writer's first write into a segment waited for a zero write still in
    /// flight there.
    pub writes_held_for_zero_fill: u64,
}

/// The commit log of one shard.
pub(crate) struct CommitLog {
    pub(crate) config: StorageConfig,
    pub(crate) dir: PathBuf,
    pub(crate) state: RefCell<LogState>,
    /// Notified when there is something to write or sync, or room to write again.
    work: Signal,
    /// Notified when `durable` moves or the log fails.
    durable_signal: Signal,
    /// Notified when pending buffers are written, so blocked appends may go on.
    room: Signal,
    /// Appends waiting in `wait_for_room`, in arrival order.
    room_line: TicketLine,
    /// Notified when the log passes the middle of a segment, when the next segment is
    /// ready (or failed), and when the log closes or fails.
    pub(crate) next_segment_signal: Signal,
    /// Notified when the log may have become idle: a write or a sync completed.
    pub(crate) idle_signal: Signal,
}

/// One waiting append's place in the room line; gives its turn up if dropped.
struct RoomTicket<'a> {
    line: &'a TicketLine,
    number: u64,
}

impl Drop for RoomTicket<'_> {
    fn drop(&mut self) {
        self.line.leave(self.number);
    }
}

/// Opens a segment file for reading and writing with O_DIRECT, creating and preallocating it
/// when `create` is set.
pub(crate) async fn open_segment_file(
    path: &Path,
    create: bool,
    segment_size_bytes: u64,
) -> Result<DmaFile> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .dma_open(path)
        .await
        .map_err(|error| {
            let error = from_glommio(error);
            if error.raw_os_error() == Some(libc::EINVAL) {
                StorageError::DirectIoUnsupported { path: path.into() }
            } else {
                StorageError::io("open segment", path, error)
            }
        })?;
    if create {
        file.pre_allocate(segment_size_bytes, false)
            .await
            .map_err(|error| StorageError::io("preallocate segment", path, from_glommio(error)))?;
    }
    Ok(file)
}

impl CommitLog {
    /// A log whose recovered content ends at `end`; `partial_block` holds the bytes
    /// `[align_down(end), end)` read back by recovery.
    pub(crate) fn new(
        config: StorageConfig,
        dir: PathBuf,
        segments: BTreeMap<u64, Segment>,
        end: u64,
        partial_block: &[u8],
    ) -> Rc<CommitLog> {
        assert_eq!(partial_block.len() as u64, end - align_down(end));
        let tail_cache = TailCache::new(config.tail_cache_bytes, config.write_buffer_bytes / 2);
        let log = Rc::new(CommitLog {
            state: RefCell::new(LogState {
                segments,
                active: None,
                pending: VecDeque::new(),
                pending_bytes: 0,
                append_end: end,
                written: end,
                synced: end,
                durable: end,
                dirty_files: Vec::new(),
                in_flight: VecDeque::new(),
                first_in_flight_ticket: 0,
                issued_end: end,
                issued_block_end: align_up(end),
                tail_cache,
                failure: None,
                closing: false,
                next_segment: NextSegment::None,
                zero_fill: ZeroFill::default(),
                next_buffer_bytes: MIN_BUFFER_BYTES.min(config.write_buffer_bytes),
                max_buffer_bytes: config.write_buffer_bytes,
                stats: LogStats::default(),
            }),
            config,
            dir,
            work: Signal::default(),
            durable_signal: Signal::default(),
            room: Signal::default(),
            room_line: TicketLine::default(),
            next_segment_signal: Signal::default(),
            idle_signal: Signal::default(),
        });
        {
            let mut state = log.state.borrow_mut();
            let segment_start = state.current_segment_start();
            let start = align_down(end);
            let mut buffer = glommio::allocate_dma_buffer_global(state.next_buffer_bytes);
            buffer.as_bytes_mut()[..partial_block.len()].copy_from_slice(partial_block);
            state.active = Some(ActiveBuffer {
                start,
                segment_start,
                buffer,
                len: partial_block.len(),
                carried: partial_block.len(),
            });
        }
        log
    }

    /// Starts the writer, the next segment's preparer, its zero-filler and, per flush mode,
    /// the syncer or the periodic flusher (in that order: [`Self::shut_down`] relies on it).
    pub(crate) fn start_tasks(self: &Rc<Self>) -> Vec<glommio::Task<()>> {
        let mut tasks = vec![
            glommio::spawn_local(self.clone().writer_loop()),
            glommio::spawn_local(self.clone().next_segment_loop()),
            glommio::spawn_local(self.clone().zero_fill_loop()),
        ];
        match self.config.flush {
            FlushMode::Sync => tasks.push(glommio::spawn_local(self.clone().syncer_loop())),
            FlushMode::Async => tasks.push(glommio::spawn_local(self.clone().flusher_loop())),
        }
        tasks
    }

    /// Fails if the log cannot accept appends.
    pub(crate) fn check_open(&self) -> Result<()> {
        let state = self.state.borrow();
        if let Some(reason) = &state.failure {
            return Err(StorageError::Closed {
                reason: reason.clone(),
            });
        }
        if state.closing {
            return Err(StorageError::Closed {
                reason: "shutting down".into(),
            });
        }
        Ok(())
    }

    /// Waits until the writer has room for more appends (bounds memory when the disk is
    /// slower than the producers). First come, first served: waiting appends hold tickets
    /// and go in ticket order, so a busy producer can never starve a quiet one.
    pub(crate) async fn wait_for_room(&self) -> Result<()> {
        let limit = PENDING_LIMIT_BUFFERS * self.config.write_buffer_bytes;
        self.check_open()?;
        let line = &self.room_line;
        if line.is_empty() && self.state.borrow().pending_bytes < limit {
            return Ok(());
        }
        let ticket = RoomTicket {
            line,
            number: line.take(),
        };
        loop {
            let changed = self.room.changed();
            self.check_open()?;
            if line.is_turn(ticket.number) && self.state.borrow().pending_bytes < limit {
                // Leaving moves the line on; the next ticket may fit too.
                drop(ticket);
                self.room.notify();
                return Ok(());
            }
            changed.await;
        }
    }

    /// Whether `len` more bytes fit in the active buffer and the current segment as they
    /// are, without sealing or rolling.
    pub(crate) fn fits_as_is(&self, len: usize) -> bool {
        let state = self.state.borrow();
        let segment_end = state.current_segment_start() + self.config.segment_size_bytes;
        state.append_end + len as u64 <= segment_end
            && state.active.as_ref().is_some_and(|active| {
                active.len + len <= active.buffer.len().min(self.config.write_buffer_bytes)
            })
    }

    /// Copies validated records into the active buffer at the log's end, rolling to a new
    /// segment when they do not fit, and lets `stamp` fill in the broker fields in place.
    /// Returns the log position of the first byte. Several records are placed in one call
    /// only when [`Self::fits_as_is`] says so; otherwise one record at a time.
    pub(crate) fn place(&self, record: &[u8], stamp: impl FnOnce(u64, &mut [u8])) -> u64 {
        let len = record.len() as u64;
        let segment_size = self.config.segment_size_bytes;
        let mut state = self.state.borrow_mut();
        let segment_start = state.current_segment_start();
        if state.append_end + len > segment_start + segment_size {
            let next_start = segment_start + segment_size;
            state.seal_active(Seal::Roll, 0);
            state.append_end = next_start;
            let path = self.dir.join(segment_file_name(next_start));
            let file = state.next_segment.take_ready(next_start);
            state.segments.insert(
                next_start,
                Segment {
                    start: next_start,
                    path,
                    file,
                    newest_store_timestamp_ms: 0,
                },
            );
            state.replace_active(next_start, next_start, &[], 0, len as usize);
        }
        let fits = state.active.as_ref().is_some_and(|active| {
            active.len + len as usize <= active.buffer.len()
                && active.len < self.config.write_buffer_bytes
        });
        if !fits {
            state.seal_active(Seal::Full, len as usize);
        }
        let position = state.append_end;
        let active = state
            .active
            .as_mut()
            .expect("an active buffer after sealing");
        assert_eq!(active.start + active.len as u64, position);
        let slot = &mut active.buffer.as_bytes_mut()[active.len..active.len + len as usize];
        slot.copy_from_slice(record);
        stamp(position, slot);
        active.len += len as usize;
        state.append_end += len;
        let wants_next_segment = state.segment_to_prepare(segment_size).is_some();
        drop(state);
        self.work.notify();
        if wants_next_segment {
            self.next_segment_signal.notify();
        }
        position
    }

    /// Notes the store time of the newest record of the current segment.
    pub(crate) fn note_store_timestamp(&self, store_timestamp_ms: i64) {
        let mut state = self.state.borrow_mut();
        if let Some((_, segment)) = state.segments.iter_mut().next_back() {
            segment.newest_store_timestamp_ms = store_timestamp_ms;
        }
    }

    /// Waits until the log is durable up to `end`.
    pub(crate) async fn wait_durable(&self, end: u64) -> Result<()> {
        loop {
            let changed = self.durable_signal.changed();
            {
                let state = self.state.borrow();
                if state.durable >= end {
                    return Ok(());
                }
                if let Some(reason) = &state.failure {
                    return Err(StorageError::Closed {
                        reason: reason.clone(),
                    });
                }
            }
            changed.await;
        }
    }

    /// Durable end of the log.
    pub(crate) fn durable(&self) -> LogPosition {
        LogPosition(self.state.borrow().durable)
    }

    fn fail(&self, reason: String) {
        tracing::error!(shard = self.config.shard_id.0, %reason, "commit log failed; refusing appends");
        self.state.borrow_mut().failure.get_or_insert(reason);
        self.durable_signal.notify();
        self.next_segment_signal.notify();
        self.room.notify();
        self.work.notify();
    }

    /// The open file of a segment, waiting for the preparer if it is creating it, or
    /// creating it here if nobody has.
    async fn segment_file(&self, segment_start: u64) -> Result<Rc<DmaFile>> {
        let mut held_for_zero_fill = false;
        loop {
            let changed = self.next_segment_signal.changed();
            {
                let mut state = self.state.borrow_mut();
                let segment = state
                    .segments
                    .get(&segment_start)
                    .expect("a pending write for a known segment");
                match segment.file.clone() {
                    // Zeros still being written there would land on the records.
                    Some(_) if state.zero_fill.writing(segment_start) => {
                        held_for_zero_fill = true;
                    }
                    Some(file) => {
                        if held_for_zero_fill {
                            state.stats.writes_held_for_zero_fill += 1;
                        }
                        return Ok(file);
                    }
                    None if !state.next_segment.is_creating(segment_start) => break,
                    None => {}
                }
            }
            changed.await;
        }
        let file = self.create_segment_file(segment_start).await?;
        let mut state = self.state.borrow_mut();
        state.stats.segments_created_at_roll += 1;
        let segment = state
            .segments
            .get_mut(&segment_start)
            .expect("a pending write for a known segment");
        Ok(segment.file.get_or_insert(file).clone())
    }

    /// Takes the next write that may be issued now, sealing the active buffer when the
    /// writer would otherwise idle. `None` when nothing may go yet.
    fn next_write(&self, state: &mut LogState) -> Option<PendingWrite> {
        if state.in_flight.len() >= MAX_WRITES_IN_FLIGHT {
            return None;
        }
        if self.config.flush == FlushMode::Sync
            && state.issued_end - state.synced
                >= MAX_UNSYNCED_BUFFERS * self.config.largest_write_bytes()
        {
            return None;
        }
        if state.pending.is_empty() && state.in_flight.is_empty() && state.active_has_new_data() {
            state.seal_active(Seal::Flush, 0);
        }
        // A write that rewrites the previous write's partial block waits for it.
        let overlaps = state
            .pending
            .front()
            .is_some_and(|job| job.start < state.issued_block_end && !state.in_flight.is_empty());
        if overlaps {
            return None;
        }
        state.pending.pop_front()
    }

    async fn writer_loop(self: Rc<Self>) {
        loop {
            let changed = self.work.changed();
            let job = {
                let mut state = self.state.borrow_mut();
                if state.failure.is_some() {
                    return;
                }
                let job = self.next_write(&mut state);
                if job.is_none()
                    && state.closing
                    && state.pending.is_empty()
                    && state.in_flight.is_empty()
                    && !state.active_has_new_data()
                {
                    return;
                }
                job
            };
            let Some(job) = job else {
                changed.await;
                continue;
            };
            let file = match self.segment_file(job.segment_start).await {
                Ok(file) => file,
                Err(error) => {
                    self.fail(error.to_string());
                    return;
                }
            };
            let ticket = {
                let mut state = self.state.borrow_mut();
                let ticket = state.first_in_flight_ticket + state.in_flight.len() as u64;
                state.in_flight.push_back(InFlight {
                    data_end: job.data_end,
                    done: false,
                });
                state.issued_end = job.data_end;
                state.issued_block_end = job.start + job.buffer.len() as u64;
                ticket
            };
            glommio::spawn_local(self.clone().write(job, file, ticket)).detach();
        }
    }

    async fn write(self: Rc<Self>, job: PendingWrite, file: Rc<DmaFile>, ticket: u64) {
        let len = job.buffer.len();
        let buffer = Rc::new(job.buffer);
        let path = {
            let mut state = self.state.borrow_mut();
            state.pending_bytes -= len;
            state.tail_cache.insert(
                LogPosition(job.start),
                LogPosition(job.start + len as u64),
                buffer.clone(),
            );
            state.segments[&job.segment_start].path.clone()
        };
        let result = file
            .write_rc_at(buffer, job.start - job.segment_start)
            .await
            .map_err(|error| StorageError::io("write segment", &path, from_glommio(error)))
            .and_then(|written| {
                if written == len {
                    Ok(())
                } else {
                    Err(StorageError::io(
                        "write segment",
                        &path,
                        std::io::Error::new(std::io::ErrorKind::WriteZero, "short O_DIRECT write"),
                    ))
                }
            });
        if let Err(error) = result {
            self.fail(error.to_string());
            return;
        }
        let mut state = self.state.borrow_mut();
        state.stats.writes += 1;
        state.stats.bytes_written += len as u64;
        if !state
            .dirty_files
            .iter()
            .any(|(start, _)| *start == job.segment_start)
        {
            state.dirty_files.push((job.segment_start, file));
        }
        let slot = (ticket - state.first_in_flight_ticket) as usize;
        state.in_flight[slot].done = true;
        // `written` only moves over a contiguous run of completed writes.
        while state.in_flight.front().is_some_and(|write| write.done) {
            let write = state.in_flight.pop_front().expect("checked above");
            state.first_in_flight_ticket += 1;
            assert!(
                write.data_end >= state.written,
                "log positions go backwards"
            );
            state.written = write.data_end;
        }
        if self.config.flush == FlushMode::Async {
            state.durable = state.written;
        }
        let idle = state.in_flight.is_empty();
        drop(state);
        self.durable_signal.notify();
        self.room.notify();
        self.work.notify();
        if idle {
            self.idle_signal.notify();
        }
    }

    /// fdatasyncs every file written since the last sync; returns the position covered.
    async fn sync_written(&self) -> Result<u64> {
        let (target, files) = {
            let mut state = self.state.borrow_mut();
            (state.written, std::mem::take(&mut state.dirty_files))
        };
        self.state.borrow_mut().stats.syncs += files.len() as u64;
        for (start, file) in files {
            file.fdatasync().await.map_err(|error| {
                StorageError::io(
                    "fdatasync segment",
                    segment_file_name(start),
                    from_glommio(error),
                )
            })?;
        }
        self.state.borrow_mut().synced = target;
        Ok(target)
    }

    async fn syncer_loop(self: Rc<Self>) {
        loop {
            let changed = self.work.changed();
            let (has_work, finished) = {
                let state = self.state.borrow();
                (
                    state.written > state.synced,
                    state.closing
                        && state.pending.is_empty()
                        && state.in_flight.is_empty()
                        && !state.active_has_new_data(),
                )
            };
            if state_failed(&self) {
                return;
            }
            if !has_work {
                if finished {
                    return;
                }
                changed.await;
                continue;
            }
            match self.sync_written().await {
                Ok(target) => {
                    self.state.borrow_mut().durable = target;
                    self.durable_signal.notify();
                    self.work.notify();
                    self.idle_signal.notify();
                }
                Err(error) => {
                    self.fail(error.to_string());
                    return;
                }
            }
        }
    }

    async fn flusher_loop(self: Rc<Self>) {
        let interval = Duration::from_millis(self.config.flush_interval_ms);
        loop {
            let closing = self.state.borrow().closing;
            if closing || state_failed(&self) {
                return;
            }
            glommio::timer::sleep(interval).await;
            let has_work = {
                let state = self.state.borrow();
                state.written > state.synced
            };
            if has_work {
                if let Err(error) = self.sync_written().await {
                    self.fail(error.to_string());
                    return;
                }
            }
        }
    }

    /// Stops accepting appends, writes and syncs everything, and waits for the tasks.
    pub(crate) async fn shut_down(&self, tasks: Vec<glommio::Task<()>>) -> Result<()> {
        self.state.borrow_mut().closing = true;
        self.work.notify();
        self.next_segment_signal.notify();
        let mut tasks = tasks.into_iter();
        // The writer, then the next segment's preparer (it finishes a creation under way)
        // and its zero-filler (it finishes the zero write under way).
        for task in tasks.by_ref().take(3) {
            task.await;
        }
        // The async flusher may be asleep: do not wait for its timer.
        if self.config.flush == FlushMode::Sync {
            for task in tasks {
                task.await;
            }
        } else {
            drop(tasks);
        }
        if let Some(reason) = self.state.borrow().failure.clone() {
            return Err(StorageError::Closed { reason });
        }
        self.sync_written().await?;
        let mut state = self.state.borrow_mut();
        state.durable = state.written;
        drop(state);
        self.durable_signal.notify();
        self.remove_unused_next_segment()
    }

    /// Reads `[position, position + len)` from the segment holding it, with one aligned
    /// O_DIRECT read. Returns the read buffer and the offset of `position` inside it.
    pub(crate) async fn read_from_disk(
        &self,
        position: u64,
        len: usize,
    ) -> Result<(glommio::io::ReadResult, usize, PathBuf)> {
        let (file, segment_start, path) = {
            let state = self.state.borrow();
            let Some((_, segment)) = state.segments.range(..=position).next_back() else {
                return Err(StorageError::io(
                    "read segment",
                    &self.dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "position before the log"),
                ));
            };
            let file = segment.file.clone().ok_or_else(|| {
                StorageError::io(
                    "read segment",
                    &segment.path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "segment not open"),
                )
            })?;
            (file, segment.start, segment.path.clone())
        };
        let file_position = position - segment_start;
        let aligned_start = align_down(file_position);
        let aligned_end = align_up(file_position + len as u64).min(self.config.segment_size_bytes);
        let read = file
            .read_at_aligned(aligned_start, (aligned_end - aligned_start) as usize)
            .await
            .map_err(|error| StorageError::io("read segment", &path, from_glommio(error)))?;
        Ok((read, (file_position - aligned_start) as usize, path))
    }
}

fn state_failed(log: &CommitLog) -> bool {
    log.state.borrow().failure.is_some()
}

impl LogState {
    pub(crate) fn current_segment_start(&self) -> u64 {
        *self
            .segments
            .keys()
            .next_back()
            .expect("a log always has a segment")
    }

    /// Whether the log has nothing in flight or waiting to be written, and in `sync` mode
    /// nothing unsynced.
    pub(crate) fn is_idle(&self, flush: FlushMode) -> bool {
        self.in_flight.is_empty()
            && self.pending.is_empty()
            && !self.active_has_new_data()
            && (flush == FlushMode::Async || self.written == self.synced)
    }

    fn active_has_new_data(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|active| active.len > active.carried)
    }

    /// Moves the active buffer's unwritten data to the pending writes and starts a new
    /// active buffer at the log's end that can take at least `room_for` more bytes.
    fn seal_active(&mut self, seal: Seal, room_for: usize) {
        let Some(active) = self.active.take() else {
            return;
        };
        let ActiveBuffer {
            start,
            segment_start,
            mut buffer,
            len,
            carried,
        } = active;
        let end = start + len as u64;
        let carry_from = align_down(end);
        let carry: Vec<u8> = match seal {
            Seal::Roll => Vec::new(),
            _ => buffer.as_bytes()[(carry_from - start) as usize..len].to_vec(),
        };
        // Full buffers are written up to their last whole block and the partial block moves
        // on unwritten, so consecutive writes never overlap and can be in flight together.
        // A flush or a roll writes the partial block too (zero-padded).
        let (write_len, data_end, carried_written) = match seal {
            Seal::Full => ((carry_from - start) as usize, carry_from, 0),
            Seal::Flush => (align_up(len as u64) as usize, end, carry.len()),
            Seal::Roll => (align_up(len as u64) as usize, end, 0),
        };
        if data_end > start + carried as u64 && write_len > 0 {
            buffer.as_bytes_mut()[len.min(write_len)..write_len].fill(0);
            buffer.trim_to_size(write_len);
            self.next_buffer_bytes = (2 * len).clamp(
                self.max_buffer_bytes.min(MIN_BUFFER_BYTES),
                self.max_buffer_bytes,
            );
            self.pending_bytes += write_len;
            self.pending.push_back(PendingWrite {
                start,
                data_end,
                segment_start,
                buffer,
            });
            self.replace_active(carry_from, segment_start, &carry, carried_written, room_for);
        } else {
            // Nothing new to write (or less than a block): keep the bytes, grow the buffer.
            let keep = buffer.as_bytes()[..len].to_vec();
            self.replace_active(start, segment_start, &keep, carried, room_for);
        }
    }

    /// Starts a new active buffer at `start` holding `carry`, of which the first
    /// `carried_written` bytes are already on disk.
    fn replace_active(
        &mut self,
        start: u64,
        segment_start: u64,
        carry: &[u8],
        carried_written: usize,
        room_for: usize,
    ) {
        let needed = carry.len() + room_for;
        let capacity = align_up(needed.max(self.next_buffer_bytes) as u64) as usize;
        // A spare between half and twice the wanted size will do (spares shrink a little
        // each time they are written whole blocks only).
        let mut buffer = self
            .tail_cache
            .take_spare(needed.max(capacity / 2), 2 * capacity)
            .unwrap_or_else(|| {
                self.stats.buffers_allocated += 1;
                glommio::allocate_dma_buffer_global(capacity)
            });
        buffer.as_bytes_mut()[..carry.len()].copy_from_slice(carry);
        self.active = Some(ActiveBuffer {
            start,
            segment_start,
            buffer,
            len: carry.len(),
            carried: carried_written,
        });
    }
}

/// fsyncs a directory so a created or removed file name survives power loss.
pub(crate) async fn sync_directory(dir: &Path) -> Result<()> {
    let directory = glommio::io::Directory::open(dir)
        .await
        .map_err(|error| StorageError::io("open directory", dir, from_glommio(error)))?;
    directory
        .sync()
        .await
        .map_err(|error| StorageError::io("sync directory", dir, from_glommio(error)))?;
    directory
        .close()
        .await
        .map_err(|error| StorageError::io("close directory", dir, from_glommio(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(1 << 30), "00000000001073741824.log");
        assert_eq!(
            parse_segment_file_name("00000000001073741824.log"),
            Some(1 << 30)
        );
        assert_eq!(parse_segment_file_name("1073741824.log"), None);
        assert_eq!(parse_segment_file_name("0000000000107374182x.log"), None);
    }
}
