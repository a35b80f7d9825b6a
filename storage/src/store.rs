//! `ShardStore`: one shard's storage — its commit log, its queue indexes, their recovery at
//! open, the periodic checkpoint, and the append path that stamps records.
//!
//! A `ShardStore` lives inside one glommio executor and is used from that executor's tasks
//! only (`Rc`, no locks). It knows nothing about sockets or the wire: the broker hands it
//! batches in the record format and gets back offsets and record bytes.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, QueueExtent};
use crate::commit_log::{open_segment_file, segment_file_name, CommitLog, Segment};
use crate::config::StorageConfig;
use crate::creation_line::CreationLines;
use crate::error::{from_glommio, Result, StorageError};
use crate::ids::{LogPosition, QueueId, QueueOffset};
use crate::queue_index::{IndexEntry, QueueIndex};
use crate::record::{self, RecordView, Stamp};
use crate::recovery::{open_segments, LogScanner, ScanStep};
use crate::signal::Signal;

/// How often index entries are written between checkpoints (see
/// [`ShardStore::write_indexes`]).
pub const INDEX_WRITE_INTERVAL: Duration = Duration::from_millis(100);

/// What an acknowledged append got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Queue offset of the batch's first record; the others follow densely.
    pub first_offset: QueueOffset,
    /// Number of records appended.
    pub record_count: u32,
    /// Log position of the first record.
    pub first_position: LogPosition,
    /// Log position just past the last record.
    pub end_position: LogPosition,
}

/// How a recovery went (also logged).
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// The log ended at the position the last checkpoint said (no scan needed beyond it).
    pub clean_shutdown: bool,
    /// The whole log was rescanned to rebuild the indexes.
    pub full_rebuild: bool,
    /// Where the scan started.
    pub scan_start: LogPosition,
    /// Where the log ends now.
    pub log_end: LogPosition,
    /// Records found by the scan.
    pub records_scanned: u64,
    /// Bytes read by the scan.
    pub bytes_scanned: u64,
    /// Set when a torn tail (or, with repair, damage) was cut off here.
    pub cut_at: Option<LogPosition>,
    /// Wall time of recovery.
    pub elapsed: Duration,
}

pub(crate) type QueueHandle = Rc<RefCell<QueueIndex>>;

pub(crate) struct StoreInner {
    pub(crate) config: StorageConfig,
    pub(crate) shard_dir: PathBuf,
    pub(crate) index_dir: PathBuf,
    pub(crate) log: Rc<CommitLog>,
    pub(crate) queues: RefCell<HashMap<Rc<str>, HashMap<QueueId, QueueHandle>>>,
    pub(crate) queue_count: Cell<usize>,
    /// Appends waiting for a queue being created, in arrival order.
    creation_lines: Rc<CreationLines>,
    last_store_timestamp_ms: Cell<i64>,
    pub(crate) disk_full: Cell<Option<f64>>,
    checkpoint_running: Cell<bool>,
    checkpoint_done: Signal,
    closing: Cell<bool>,
    closing_signal: Signal,
    /// The commit log's writer and syncer (or flusher).
    log_tasks: RefCell<Vec<glommio::Task<()>>>,
    /// The checkpoint and retention loops.
    store_tasks: RefCell<Vec<glommio::Task<()>>>,
    recovery: RecoveryReport,
}

/// One shard's store. Cheap to clone (a handle); use it only on the executor that opened it.
#[derive(Clone)]
pub struct ShardStore {
    pub(crate) inner: Rc<StoreInner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Checks a topic name: 1..=127 bytes of `[A-Za-z0-9_.%|-]`, not `.` or `..`.
pub fn validate_topic(topic: &str) -> Result<()> {
    let bad = |reason| {
        Err(StorageError::BadTopic {
            topic: topic.chars().take(140).collect(),
            reason,
        })
    };
    if topic.is_empty() || topic.len() > record::MAX_TOPIC_BYTES {
        return bad("must be 1 to 127 bytes long");
    }
    if topic == "." || topic == ".." {
        return bad("must not be . or ..");
    }
    if !topic
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"_.%|-".contains(&byte))
    {
        return bad("may contain only letters, digits and _ . % | -");
    }
    Ok(())
}

/// Makes sure the data directory takes O_DIRECT, and primes glommio's per-device io-poll
/// probe with a non-empty file. glommio 0.9 probes io-poll support with a read at offset 0
/// of the first file opened on a device; on an empty file that read "succeeds" without
/// reaching the device, glommio then routes every read to its io-poll ring, and devices
/// without poll queues (virtio here) fail those reads with EOPNOTSUPP.
async fn probe_direct_io(shard_dir: &std::path::Path) -> Result<()> {
    let path = shard_dir.join(".direct-io-probe");
    std::fs::write(&path, vec![0u8; 4096])
        .map_err(|error| StorageError::io("write O_DIRECT probe", &path, error))?;
    let file = glommio::io::DmaFile::open(&path).await.map_err(|error| {
        let error = from_glommio(error);
        if error.raw_os_error() == Some(libc::EINVAL) {
            StorageError::DirectIoUnsupported { path: path.clone() }
        } else {
            StorageError::io("open O_DIRECT probe", &path, error)
        }
    })?;
    file.read_at_aligned(0, 4096)
        .await
        .map_err(|error| StorageError::io("read O_DIRECT probe", &path, from_glommio(error)))?;
    file.close()
        .await
        .map_err(|error| StorageError::io("close O_DIRECT probe", &path, from_glommio(error)))?;
    Ok(())
}

impl ShardStore {
    /// Opens (creating or recovering) the store of `config.shard_id` under `config.data_dir`.
    /// Must run inside a glommio executor; background tasks are spawned on it.
    pub async fn open(mut config: StorageConfig) -> Result<ShardStore> {
        config.validate()?;
        // glommio opens relative paths against an invalid directory descriptor (EBADF).
        config.data_dir = std::path::absolute(&config.data_dir)
            .map_err(|error| StorageError::io("resolve data directory", &config.data_dir, error))?;
        let started = Instant::now();
        let shard_dir = config.shard_dir();
        let log_dir = shard_dir.join("commitlog");
        let index_dir = shard_dir.join("index");
        let trash_dir = crate::retention::trash_dir(&shard_dir);
        for dir in [&log_dir, &index_dir, &trash_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|error| StorageError::io("create directory", dir, error))?;
        }
        probe_direct_io(&shard_dir).await?;
        crate::retention::empty_trash(&shard_dir).await?;
        crate::topic_deletion::sweep_deleted_indexes(&index_dir)?;

        let mut segments = open_segments(&config, &log_dir).await?;
        let fresh = segments.is_empty();
        if fresh {
            let path = log_dir.join(segment_file_name(0));
            let file = open_segment_file(&path, true, config.segment_size_bytes).await?;
            crate::commit_log::sync_directory(&log_dir).await?;
            segments.insert(
                0,
                Segment {
                    start: 0,
                    path,
                    file: Some(Rc::new(file)),
                    newest_store_timestamp_ms: now_ms(),
                },
            );
        }
        let first_start = *segments.keys().next().expect("at least one segment");
        let last_end =
            *segments.keys().next_back().expect("at least one segment") + config.segment_size_bytes;

        // Incremental recovery from the checkpoint when its index files are all there.
        let checkpoint = Checkpoint::load(&shard_dir)?.filter(|checkpoint| {
            !fresh && (first_start..=last_end).contains(&checkpoint.index_position)
        });
        let mut queues: HashMap<Rc<str>, HashMap<QueueId, QueueHandle>> = HashMap::new();
        let mut report = RecoveryReport::default();
        let mut scan_start = first_start;
        let mut clean_end = None;
        if let Some(checkpoint) = &checkpoint {
            let mut complete = true;
            for extent in &checkpoint.queues {
                let topic: Rc<str> = extent.topic.as_str().into();
                match QueueIndex::open(
                    &index_dir,
                    topic.clone(),
                    extent.queue,
                    extent.min_offset,
                    extent.next_offset,
                )
                .await?
                {
                    Some(index) => {
                        queues
                            .entry(topic)
                            .or_default()
                            .insert(extent.queue, Rc::new(RefCell::new(index)));
                    }
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            if complete {
                scan_start = checkpoint.index_position;
                report.clean_shutdown = checkpoint.clean;
                clean_end = checkpoint.clean.then_some(checkpoint.index_position);
            } else {
                queues.clear();
            }
        }
        if fresh {
            // A log just created is empty: nothing to scan, nothing to rebuild.
            clean_end = Some(first_start);
        }
        report.full_rebuild = !fresh && scan_start == first_start && queues.is_empty();
        if report.full_rebuild || fresh {
            // Rebuild every index from the log: drop whatever index files are left.
            std::fs::remove_dir_all(&index_dir)
                .and_then(|()| std::fs::create_dir_all(&index_dir))
                .map_err(|error| StorageError::io("reset index directory", &index_dir, error))?;
        }
        report.scan_start = LogPosition(scan_start);

        // Store times never go backwards, across restarts too (timestamp search relies on it).
        let mut last_store_timestamp_ms = queues
            .values()
            .flat_map(HashMap::values)
            .filter_map(|handle| handle.borrow().newest_store_timestamp_ms())
            .max()
            .unwrap_or(0);
        let mut queue_count = queues.values().map(HashMap::len).sum::<usize>();
        let (end, partial_block, bytes_scanned) = {
            let mut scanner = LogScanner::new(&config, &segments, scan_start, clean_end);
            let end = loop {
                let bad = match scanner.next().await? {
                    ScanStep::End(end) => break end,
                    ScanStep::Invalid(position) => position,
                    ScanStep::Record(view) => {
                        let position = LogPosition(view.log_position());
                        let accepted = recover_record(
                            &config,
                            &index_dir,
                            &mut queues,
                            &mut queue_count,
                            &view,
                        )
                        .await?;
                        if accepted {
                            report.records_scanned += 1;
                            last_store_timestamp_ms =
                                last_store_timestamp_ms.max(view.store_timestamp_ms());
                            continue;
                        }
                        position
                    }
                };
                let end = scanner.settle_tail(bad, config.repair).await?;
                report.cut_at = Some(end);
                break end;
            };
            let partial_block = scanner.partial_block(end.0).await?;
            (end, partial_block, scanner.bytes_scanned)
        };
        // A cut deletes the segments after the one it lands in.
        let cut_segment = *segments
            .range(..=end.0)
            .next_back()
            .expect("end in a segment")
            .0;
        segments.retain(|start, _| *start <= cut_segment);
        report.log_end = end;
        report.bytes_scanned = bytes_scanned;
        report.elapsed = started.elapsed();
        tracing::info!(
            shard = config.shard_id.0,
            clean_shutdown = report.clean_shutdown,
            full_rebuild = report.full_rebuild,
            scan_start = report.scan_start.0,
            log_end = end.0,
            records_scanned = report.records_scanned,
            bytes_scanned,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "recovered shard"
        );

        let log = CommitLog::new(config.clone(), log_dir, segments, end.0, &partial_block);
        let log_tasks = log.start_tasks();
        let store = ShardStore {
            inner: Rc::new(StoreInner {
                config,
                shard_dir,
                index_dir,
                log,
                queues: RefCell::new(queues),
                queue_count: Cell::new(queue_count),
                creation_lines: Rc::default(),
                last_store_timestamp_ms: Cell::new(last_store_timestamp_ms),
                disk_full: Cell::new(None),
                checkpoint_running: Cell::new(false),
                checkpoint_done: Signal::default(),
                closing: Cell::new(false),
                closing_signal: Signal::default(),
                log_tasks: RefCell::new(log_tasks),
                store_tasks: RefCell::new(Vec::new()),
                recovery: report,
            }),
        };
        // From here on a crash must scan from this point: mark the checkpoint unclean.
        store.checkpoint(false).await?;
        let checkpoints = glommio::spawn_local(store.clone().checkpoint_loop());
        let retention = glommio::spawn_local(store.clone().retention_loop());
        store
            .inner
            .store_tasks
            .borrow_mut()
            .extend([checkpoints, retention]);
        Ok(store)
    }

    /// How the last open recovered the shard.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Resolves once the next commit-log segment has been created ahead of the roll (or
    /// its creation failed, or the store closes). The creation starts when an append lands
    /// past the middle of the current segment; until one does, this waits.
    pub async fn next_segment_settled(&self) {
        self.inner.log.next_segment_settled().await;
    }

    /// Resolves once the next commit-log segment, created ahead, is zero-filled whole (or
    /// zero-filling it failed, or is off, or the store closes). Zero-filling runs only while
    /// the log is idle; until the next segment exists, this waits.
    pub async fn zero_fill_settled(&self) {
        self.inner.log.zero_fill_settled().await;
    }

    /// Counters of the commit log's writer.
    pub fn log_stats(&self) -> crate::commit_log::LogStats {
        self.inner.log.state.borrow().stats
    }

    /// The store's configuration.
    pub fn config(&self) -> &StorageConfig {
        &self.inner.config
    }

    pub(crate) fn queue(&self, topic: &str, queue: QueueId) -> Option<QueueHandle> {
        self.inner.queues.borrow().get(topic)?.get(&queue).cloned()
    }

    pub(crate) fn queue_or_not_found(&self, topic: &str, queue: QueueId) -> Result<QueueHandle> {
        self.queue(topic, queue)
            .ok_or_else(|| StorageError::QueueNotFound {
                topic: topic.into(),
                queue,
            })
    }

    async fn queue_or_create(&self, topic: &str, queue: QueueId) -> Result<QueueHandle> {
        if let Some(handle) = self.queue(topic, queue) {
            return Ok(handle);
        }
        validate_topic(topic)?;
        if self.inner.queue_count.get() >= self.inner.config.max_queues {
            return Err(StorageError::TooManyQueues {
                limit: self.inner.config.max_queues,
            });
        }
        let topic: Rc<str> = topic.into();
        let index = QueueIndex::open(&self.inner.index_dir, topic.clone(), queue, 0, 0)
            .await?
            .expect("an empty index always opens");
        // Another task may have created it while we awaited.
        if let Some(handle) = self.queue(&topic, queue) {
            return Ok(handle);
        }
        let handle = Rc::new(RefCell::new(index));
        self.inner
            .queues
            .borrow_mut()
            .entry(topic)
            .or_default()
            .insert(queue, handle.clone());
        self.inner.queue_count.set(self.inner.queue_count.get() + 1);
        Ok(handle)
    }

    /// The store time of a record placed now: the wall clock, never below the last one
    /// (timestamp search relies on store times never going backwards).
    pub(crate) fn next_store_timestamp_ms(&self) -> i64 {
        let store_timestamp_ms = now_ms().max(self.inner.last_store_timestamp_ms.get());
        self.inner.last_store_timestamp_ms.set(store_timestamp_ms);
        store_timestamp_ms
    }

    /// All queues of the shard as (topic, queue) pairs.
    pub fn queues(&self) -> Vec<(String, QueueId)> {
        let queues = self.inner.queues.borrow();
        let mut all: Vec<(String, QueueId)> = queues
            .iter()
            .flat_map(|(topic, by_id)| by_id.keys().map(|queue| (topic.to_string(), *queue)))
            .collect();
        all.sort();
        all
    }

    /// Appends a batch of producer records (see [`record`]) to `topic`'s `queue`, creating
    /// the queue on first use. The whole batch is validated first and refused whole if any
    /// record is bad. Resolves once the batch is durable per the flush mode.
    pub async fn append(&self, topic: &str, queue: QueueId, batch: &[u8]) -> Result<AppendOutcome> {
        let config = &self.inner.config;
        self.inner.log.check_open()?;
        if let Some(usage) = self.inner.disk_full.get() {
            return Err(StorageError::DiskFull {
                usage_percent: usage,
                hard_mark_percent: config.disk_hard_mark_percent,
            });
        }
        if batch.len() > config.max_batch_bytes {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                limit: config.max_batch_bytes,
            });
        }
        let mut record_count = 0u32;
        let mut at = 0;
        while at < batch.len() {
            let len = record::validate_unstamped(&batch[at..], config.max_record_bytes).map_err(
                |source| StorageError::BadRecord {
                    index: record_count as usize,
                    source,
                },
            )?;
            let view_topic = RecordView::of_validated(&batch[at..at + len]).topic();
            if view_topic != topic.as_bytes() {
                return Err(StorageError::TopicMismatch {
                    index: record_count as usize,
                    topic: topic.into(),
                });
            }
            at += len;
            record_count += 1;
        }
        if record_count == 0 {
            return Err(StorageError::BadRecord {
                index: 0,
                source: record::RecordError::Truncated {
                    needed: record::FIXED_BYTES,
                    available: 0,
                },
            });
        }
        // Before the first await: appends keep their arrival order through the creation
        // of their queue (see `creation_line`).
        let turn = CreationLines::join(&self.inner.creation_lines, topic, queue, || {
            self.queue(topic, queue).is_some()
        });
        self.inner.log.wait_for_room().await?;
        if let Some(turn) = &turn {
            turn.wait().await;
        }
        let handle = self.queue_or_create(topic, queue).await?;
        self.inner.log.check_open()?;

        let (first_offset, first_position, end_position) =
            self.stamp_and_place(&handle, queue, batch);
        drop(turn);
        self.inner.log.wait_durable(end_position).await?;
        Ok(AppendOutcome {
            first_offset,
            record_count,
            first_position,
            end_position: LogPosition(end_position),
        })
    }

    /// Stamps every record of a validated batch and copies it into the log. Nothing here
    /// awaits, so the batch gets contiguous queue offsets and lands in log order.
    fn stamp_and_place(
        &self,
        handle: &QueueHandle,
        queue: QueueId,
        batch: &[u8],
    ) -> (QueueOffset, LogPosition, u64) {
        let store_timestamp_ms = self.next_store_timestamp_ms();
        let mut index = handle.borrow_mut();
        let first_offset = index.next_offset();
        let mut stamp_run = |position: u64, run: &mut [u8]| {
            let mut at = 0;
            while at < run.len() {
                let len = record::peek_total_length(&run[at..]).expect("validated above");
                let slot = &mut run[at..at + len];
                let queue_offset = index.push(IndexEntry {
                    position: LogPosition(position + at as u64),
                    size: len as u32,
                    tag_hash: record::tag_hash(RecordView::of_validated(slot).tag()),
                    store_timestamp_ms,
                });
                record::stamp(
                    slot,
                    Stamp {
                        queue_id: queue.0,
                        queue_offset: queue_offset.0,
                        log_position: position + at as u64,
                        store_timestamp_ms,
                    },
                );
                at += len;
            }
        };
        let (first_position, end_position) = if self.inner.log.fits_as_is(batch.len()) {
            // The common case: one copy for the whole batch.
            let position = self.inner.log.place(batch, &mut stamp_run);
            (position, position + batch.len() as u64)
        } else {
            let mut first_position = None;
            let mut end_position = 0;
            let mut at = 0;
            while at < batch.len() {
                let len = record::peek_total_length(&batch[at..]).expect("validated above");
                let position = self.inner.log.place(&batch[at..at + len], &mut stamp_run);
                first_position.get_or_insert(position);
                end_position = position + len as u64;
                at += len;
            }
            (first_position.unwrap_or(end_position), end_position)
        };
        drop(index);
        self.inner.log.note_store_timestamp(store_timestamp_ms);
        (first_offset, LogPosition(first_position), end_position)
    }

    /// Writes every durable index entry to the index files, syncs them, and records the
    /// checkpoint. Runs one at a time, and never alongside [`Self::write_indexes`].
    pub(crate) async fn checkpoint(&self, clean: bool) -> Result<()> {
        self.one_index_pass_at_a_time(self.checkpoint_now(clean))
            .await
    }

    /// Writes every durable index entry not yet in its file, without syncing: between
    /// checkpoints, so that index data reaches the disk a little at a time instead of in
    /// one burst per checkpoint (at 100-byte records, a second's entries are ~150 MB, and
    /// that burst held up the log's writes for hundreds of milliseconds), and so that the
    /// entries in memory stay few. The checkpoint then only syncs.
    pub async fn write_indexes(&self) -> Result<()> {
        self.one_index_pass_at_a_time(async {
            let durable = self.inner.log.durable();
            self.flush_indexes(durable, false).await.map(drop)
        })
        .await
    }

    async fn one_index_pass_at_a_time(&self, pass: impl Future<Output = Result<()>>) -> Result<()> {
        while self.inner.checkpoint_running.replace(true) {
            self.inner.checkpoint_done.changed().await;
        }
        let result = pass.await;
        self.inner.checkpoint_running.set(false);
        self.inner.checkpoint_done.notify();
        result
    }

    async fn checkpoint_now(&self, clean: bool) -> Result<()> {
        let durable = self.inner.log.durable();
        let handles = self.flush_indexes(durable, true).await?;
        let queues = handles
            .iter()
            .map(|handle| {
                let index = handle.borrow();
                QueueExtent {
                    topic: index.topic.to_string(),
                    queue: index.queue,
                    min_offset: index.min_offset().0,
                    next_offset: index.flushed_offset(),
                }
            })
            .collect();
        Checkpoint {
            clean,
            index_position: durable.0,
            queues,
        }
        .store(&self.inner.shard_dir)
        .await
    }

    /// Writes every queue's durable entries not yet in its file and, with `sync`, syncs
    /// every file written since its last sync; returns every queue's handle.
    ///
    /// Every index file is written and synced at once, not one after another: each
    /// fdatasync of a grown file is a journal commit, and concurrent ones share commits
    /// (one after another, a checkpoint of 8 queues took 0.3-4 s on a busy disk, each
    /// commit also holding up the log's own writes meanwhile).
    async fn flush_indexes(&self, durable: LogPosition, sync: bool) -> Result<Vec<QueueHandle>> {
        let handles = self.all_queue_handles();
        let mut flushes = Vec::new();
        for handle in &handles {
            let (flush, file, unsynced, path) = {
                let index = handle.borrow();
                (
                    index.prepare_flush(durable),
                    index.file(),
                    index.is_unsynced(),
                    index.path().to_path_buf(),
                )
            };
            let must_sync = sync && (flush.is_some() || unsynced);
            if flush.is_none() && !must_sync {
                continue;
            }
            let task = glommio::spawn_local(async move {
                let flushed_to = match flush {
                    Some(flush) => {
                        flush
                            .file
                            .write_at(flush.buffer, flush.file_position)
                            .await
                            .map_err(|error| {
                                StorageError::io("write index", &path, from_glommio(error))
                            })?;
                        Some(flush.flushed_to)
                    }
                    None => None,
                };
                if must_sync {
                    file.fdatasync().await.map_err(|error| {
                        StorageError::io("sync index", &path, from_glommio(error))
                    })?;
                }
                Ok::<Option<u64>, StorageError>(flushed_to)
            });
            flushes.push((handle, must_sync, task));
        }
        // All are awaited, failed or not, so none is left running past the pass. Entries
        // are let go of (`finish_flush`) only once their write completed.
        let mut failure = None;
        for (handle, synced, task) in flushes {
            match task.await {
                Ok(flushed_to) => {
                    let mut index = handle.borrow_mut();
                    if let Some(flushed_to) = flushed_to {
                        index.finish_flush(flushed_to);
                    }
                    if synced {
                        index.note_synced();
                    }
                }
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(handles),
        }
    }

    /// Every queue's handle, in no particular order.
    pub(crate) fn all_queue_handles(&self) -> Vec<QueueHandle> {
        self.inner
            .queues
            .borrow()
            .values()
            .flat_map(|by_id| by_id.values().cloned())
            .collect()
    }

    /// Sleeps `interval`; false when the store started closing meanwhile.
    async fn sleep_unless_closing(&self, interval: Duration) -> bool {
        let closing = self.inner.closing_signal.changed();
        if self.inner.closing.get() {
            return false;
        }
        futures_lite::future::or(glommio::timer::sleep(interval), closing).await;
        !self.inner.closing.get()
    }

    /// Writes index entries every [`INDEX_WRITE_INTERVAL`] and takes a checkpoint every
    /// `checkpoint_interval_ms`.
    async fn checkpoint_loop(self) {
        let checkpoint_interval = Duration::from_millis(self.inner.config.checkpoint_interval_ms);
        let tick = INDEX_WRITE_INTERVAL.min(checkpoint_interval);
        let mut next_checkpoint = Instant::now() + checkpoint_interval;
        while self.sleep_unless_closing(tick).await {
            let now = Instant::now();
            let (result, what) = if now >= next_checkpoint {
                next_checkpoint = now + checkpoint_interval;
                (self.checkpoint(false).await, "checkpoint failed")
            } else {
                (self.write_indexes().await, "writing index entries failed")
            };
            if let Err(error) = result {
                tracing::error!(shard = self.inner.config.shard_id.0, %error, "{what}");
            }
        }
    }

    async fn retention_loop(self) {
        let interval = Duration::from_millis(self.inner.config.retention_check_interval_ms);
        let data_dir = self.inner.config.data_dir.clone();
        while self.sleep_unless_closing(interval).await {
            let mut usage = || crate::retention::disk_usage_percent(&data_dir);
            if let Err(error) = self.apply_retention(now_ms(), &mut usage).await {
                tracing::error!(shard = self.inner.config.shard_id.0, %error, "retention failed");
            }
        }
    }

    /// Clean shutdown: refuse new appends, write and sync everything, write a clean
    /// checkpoint. In-flight appends complete first.
    pub async fn close(self) -> Result<()> {
        self.inner.closing.set(true);
        self.inner.closing_signal.notify();
        let store_tasks = std::mem::take(&mut *self.inner.store_tasks.borrow_mut());
        for task in store_tasks {
            task.await;
        }
        let log_tasks = std::mem::take(&mut *self.inner.log_tasks.borrow_mut());
        self.inner.log.shut_down(log_tasks).await?;
        self.checkpoint(true).await
    }

    /// Stops the store's background work (the log's writer and syncers, index writes,
    /// checkpoints, retention) where it stands, writing nothing more: what a crash leaves
    /// behind, for tests that reopen the directory in the same process. Dropping a store
    /// handle does not stop that work (its tasks hold the store), so a dropped store would
    /// go on writing index files the reopened one owns. Appends still waiting never
    /// complete. A broker closes its stores instead ([`Self::close`]).
    pub fn halt(self) {
        self.inner.store_tasks.borrow_mut().clear();
        self.inner.log_tasks.borrow_mut().clear();
    }

    /// Records and returns the next store timestamp (monotonic per shard).
    pub fn last_store_timestamp_ms(&self) -> i64 {
        self.inner.last_store_timestamp_ms.get()
    }
}

/// Indexes one record found by the recovery scan. Returns false when the record cannot
/// follow what the index already has (wrong queue offset): the scan treats it as invalid.
async fn recover_record(
    config: &StorageConfig,
    index_dir: &std::path::Path,
    queues: &mut HashMap<Rc<str>, HashMap<QueueId, QueueHandle>>,
    queue_count: &mut usize,
    view: &RecordView<'_>,
) -> Result<bool> {
    let Ok(topic) = std::str::from_utf8(view.topic()) else {
        return Ok(false);
    };
    if validate_topic(topic).is_err() {
        return Ok(false);
    }
    if view.is_topic_tombstone() {
        crate::topic_deletion::forget_topic(queues, queue_count, topic)?;
        return Ok(true);
    }
    let queue = QueueId(view.queue_id());
    let existing = queues
        .get(topic)
        .and_then(|by_id| by_id.get(&queue))
        .cloned();
    let handle = match existing {
        Some(handle) => handle,
        None => {
            if *queue_count >= config.max_queues {
                return Err(StorageError::TooManyQueues {
                    limit: config.max_queues,
                });
            }
            // A queue first seen by the scan starts at the record's offset: its earlier
            // records were in segments that retention deleted.
            let topic: Rc<str> = topic.into();
            let offset = view.queue_offset();
            let index = QueueIndex::open(index_dir, topic.clone(), queue, offset, offset)
                .await?
                .expect("an empty index always opens");
            let handle = Rc::new(RefCell::new(index));
            queues
                .entry(topic)
                .or_default()
                .insert(queue, handle.clone());
            *queue_count += 1;
            handle
        }
    };
    let mut index = handle.borrow_mut();
    if index.next_offset().0 != view.queue_offset() {
        tracing::warn!(
            position = view.log_position(),
            topic,
            queue = queue.0,
            expected = index.next_offset().0,
            found = view.queue_offset(),
            "record breaks its queue's offset sequence"
        );
        return Ok(false);
    }
    index.push(IndexEntry {
        position: LogPosition(view.log_position()),
        size: view.total_length() as u32,
        tag_hash: record::tag_hash(view.tag()),
        store_timestamp_ms: view.store_timestamp_ms(),
    });
    Ok(true)
}
