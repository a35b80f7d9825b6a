//! One engine case: many appenders hammering one `ShardStore` inside one glommio executor,
//! the way a broker shard would, measuring throughput and per-append latency.
//!
//! The case owns its executor (pinned to CPU 0) and its store directory; the caller creates
//! the directory's parent and removes it afterwards. Nothing here touches the raw baseline's
//! ring, and nothing blocks the executor thread.

use std::cell::Cell;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use spillway_storage::record::RecordBuilder;
use spillway_storage::{FlushMode, QueueId, ShardStore, StorageConfig, StorageError};

use crate::error::PerfError;

/// Concurrent appender tasks per case.
pub const APPENDER_TASKS: usize = 128;
/// Queues the appends are spread over (each task walks them round-robin).
pub const QUEUE_COUNT: u32 = 8;
/// Topic of every benchmark record.
pub const TOPIC: &str = "bench";
/// Target size of each append batch, for every body size.
pub const BATCH_BYTES: usize = 256 << 10;

/// One benchmark case: message body size and flush mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineCase {
    /// Size of each message body (the payload), as message-queue benchmarks quote "message
    /// size". The stored record adds the header and the topic.
    pub body_bytes: u32,
    /// When an append counts as durable.
    pub flush: FlushMode,
}

impl EngineCase {
    /// `"sync"` or `"async"`.
    pub fn flush_name(&self) -> &'static str {
        match self.flush {
            FlushMode::Sync => "sync",
            FlushMode::Async => "async",
        }
    }

    /// Length of each whole encoded record: the format's fixed part, the topic and the body.
    pub fn record_bytes(&self) -> usize {
        RecordBuilder::new(&[]).topic(TOPIC).encoded_len() + self.body_bytes as usize
    }

    /// Records per append batch: as many as fit in [`BATCH_BYTES`], at least one.
    pub fn records_per_batch(&self) -> usize {
        (BATCH_BYTES / self.record_bytes()).max(1)
    }

    /// Message body bytes carried by one batch.
    pub fn payload_bytes_per_batch(&self) -> u64 {
        self.records_per_batch() as u64 * u64::from(self.body_bytes)
    }

    /// Batches to append for at least `payload_bytes` of message bodies. With empty bodies
    /// there is no payload to count, so the encoded records stand in for it.
    pub fn batch_count(&self, payload_bytes: u64) -> u64 {
        let per_batch = match self.payload_bytes_per_batch() {
            0 => (self.records_per_batch() * self.record_bytes()) as u64,
            payload => payload,
        };
        payload_bytes.div_ceil(per_batch).max(1)
    }
}

impl fmt::Display for EngineCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} B bodies, flush {}",
            self.body_bytes,
            self.flush_name()
        )
    }
}

/// What one case measured.
#[derive(Debug)]
pub struct EngineResult {
    /// Message body bytes appended (and acknowledged).
    pub payload_bytes_appended: u64,
    /// Whole encoded record bytes appended (and acknowledged): what the store wrote.
    pub record_bytes_appended: u64,
    /// Records appended.
    pub records: u64,
    /// From the first append to the last acknowledgement.
    pub elapsed: Duration,
    /// Per-append latency, call to durable, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Runs `case` in a fresh glommio executor on CPU 0 against a new store in `store_dir`,
/// appending records carrying at least `payload_bytes` of message bodies. Blocks until the
/// executor is done.
pub fn run_case(
    case: EngineCase,
    store_dir: PathBuf,
    payload_bytes: u64,
) -> Result<EngineResult, PerfError> {
    let executor_error = |reason: String| PerfError::Executor {
        case: case.to_string(),
        reason,
    };
    let handle = LocalExecutorBuilder::new(Placement::Fixed(0))
        .name("spillway-perf")
        .spawn(move || async move { append_on_executor(case, store_dir, payload_bytes).await })
        .map_err(|error| executor_error(error.to_string()))?;
    handle
        .join()
        .map_err(|error| executor_error(error.to_string()))?
}

async fn append_on_executor(
    case: EngineCase,
    store_dir: PathBuf,
    payload_bytes: u64,
) -> Result<EngineResult, PerfError> {
    let batch = Rc::new(encode_batch(case)?);
    let records_per_batch = case.records_per_batch() as u64;
    let batch_count = case.batch_count(payload_bytes);

    let mut config = StorageConfig::new(store_dir);
    config.flush = case.flush;
    let config_tail_cache_bytes = config.tail_cache_bytes;
    let store = Rc::new(
        ShardStore::open(config)
            .await
            .map_err(storage_error(case, "opening the store"))?,
    );

    // Warm-up, not measured: fills the tail cache, so that the measured appends get their
    // write buffers from the ones it evicts, as in a broker that has been running a while
    // (a cold store first allocates, and page-faults, `tail_cache_bytes` of fresh ones).
    let warm_up_batches = (config_tail_cache_bytes as u64).div_ceil(batch.len() as u64);
    append_batches(case, &store, &batch, warm_up_batches).await?;
    let stats_before = store.log_stats();

    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let faults_start = thread_minor_faults();
    let latency_us = append_batches(case, &store, &batch, batch_count).await?;
    let elapsed = start.elapsed();
    let stats = store.log_stats();
    let (writes, syncs) = (
        stats.writes - stats_before.writes,
        stats.syncs - stats_before.syncs,
    );
    let bytes_written = stats.bytes_written - stats_before.bytes_written;
    let cpu_busy = (thread_cpu_time() - cpu_start).as_secs_f64() / elapsed.as_secs_f64();
    tracing::info!(
        cpu_busy = format!("{:.0}%", cpu_busy * 100.0),
        writes,
        average_write_bytes = bytes_written / writes.max(1),
        syncs,
        segments_created_ahead = stats.segments_created_ahead - stats_before.segments_created_ahead,
        segments_created_at_roll =
            stats.segments_created_at_roll - stats_before.segments_created_at_roll,
        buffers_allocated = stats.buffers_allocated - stats_before.buffers_allocated,
        bytes_zero_filled = stats.bytes_zero_filled - stats_before.bytes_zero_filled,
        minor_faults = thread_minor_faults() - faults_start,
        "commit log writer"
    );
    let store = Rc::try_unwrap(store).unwrap_or_else(|_| {
        unreachable!("every appender task has finished, so the store has one owner")
    });
    store
        .close()
        .await
        .map_err(storage_error(case, "closing the store"))?;

    let appends = latency_us.len();
    Ok(EngineResult {
        payload_bytes_appended: appends * case.payload_bytes_per_batch(),
        record_bytes_appended: appends * batch.len() as u64,
        records: appends * records_per_batch,
        elapsed,
        latency_us,
    })
}

/// Appends `batch_count` copies of `batch` from [`APPENDER_TASKS`] concurrent tasks, each
/// walking the queues round-robin; returns the merged per-append latency.
async fn append_batches(
    case: EngineCase,
    store: &Rc<ShardStore>,
    batch: &Rc<Vec<u8>>,
    batch_count: u64,
) -> Result<Histogram<u64>, PerfError> {
    let batches_left = Rc::new(Cell::new(batch_count));
    let appenders: Vec<_> = (0..APPENDER_TASKS)
        .map(|task_index| {
            let store = Rc::clone(store);
            let batch = Rc::clone(batch);
            let batches_left = Rc::clone(&batches_left);
            glommio::spawn_local(async move {
                let mut latency_us = new_latency_histogram()?;
                let mut queue = task_index as u32 % QUEUE_COUNT;
                while batches_left.get() > 0 {
                    batches_left.set(batches_left.get() - 1);
                    let called = Instant::now();
                    let appended = store.append(TOPIC, QueueId(queue), &batch).await;
                    if let Err(error) = appended {
                        // Stop the other appenders too: the case has failed.
                        batches_left.set(0);
                        return Err(storage_error(case, "appending")(error));
                    }
                    let micros = called.elapsed().as_micros();
                    latency_us
                        .record(u64::try_from(micros).unwrap_or(u64::MAX))
                        .map_err(histogram_error)?;
                    queue = (queue + 1) % QUEUE_COUNT;
                }
                Ok::<_, PerfError>(latency_us)
            })
        })
        .collect();

    let mut latency_us = new_latency_histogram()?;
    let mut first_error = None;
    for appender in appenders {
        match appender.await {
            Ok(task_latency_us) => latency_us.add(&task_latency_us).map_err(histogram_error)?,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(latency_us),
    }
}

/// An empty latency histogram: microseconds, 3 significant digits, growing as needed.
pub fn new_latency_histogram() -> Result<Histogram<u64>, PerfError> {
    Histogram::new(3).map_err(histogram_error)
}

/// Wraps a histogram failure (creating, recording or merging).
pub fn histogram_error(error: impl fmt::Display) -> PerfError {
    PerfError::Histogram {
        reason: error.to_string(),
    }
}

/// Wraps an engine error with the case and what the benchmark was doing.
fn storage_error(case: EngineCase, operation: &'static str) -> impl Fn(StorageError) -> PerfError {
    move |source| PerfError::Storage {
        case: case.to_string(),
        operation,
        source,
    }
}

/// One batch of identical records, each `RecordBuilder::new(&body).topic(TOPIC)` with a
/// body of `case.body_bytes`.
fn encode_batch(case: EngineCase) -> Result<Vec<u8>, PerfError> {
    let body: Vec<u8> = (0..case.body_bytes).map(|index| index as u8).collect();
    let records_per_batch = case.records_per_batch();
    let mut batch = Vec::with_capacity(records_per_batch * case.record_bytes());
    for _ in 0..records_per_batch {
        let encoded = RecordBuilder::new(&body)
            .topic(TOPIC)
            .encode(&mut batch)
            .map_err(|error| PerfError::Record {
                body_bytes: case.body_bytes,
                reason: error.to_string(),
            })?;
        assert_eq!(encoded, case.record_bytes(), "record size arithmetic");
    }
    Ok(batch)
}

/// Minor page faults of the calling thread so far (first touches of fresh memory).
fn thread_minor_faults() -> i64 {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    usage.ru_minflt
}

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use spillway_storage::record::FIXED_BYTES;

    use super::*;

    fn case(body_bytes: u32) -> EngineCase {
        EngineCase {
            body_bytes,
            flush: FlushMode::Sync,
        }
    }

    #[test]
    fn a_record_is_its_body_plus_the_fixed_part_and_the_topic() {
        assert_eq!(FIXED_BYTES + TOPIC.len(), 105);
        assert_eq!(case(0).record_bytes(), 105);
        assert_eq!(case(100).record_bytes(), 205);
        assert_eq!(case(1024).record_bytes(), 1129);
    }

    #[test]
    fn batches_hold_records_of_exactly_the_encoded_size() {
        for body_bytes in [0, 1, 100, 1024, 4096, 300 << 10] {
            let case = case(body_bytes);
            let batch = encode_batch(case).unwrap();
            assert_eq!(
                batch.len(),
                case.records_per_batch() * case.record_bytes(),
                "{case}"
            );
        }
    }

    #[test]
    fn batches_aim_at_256_kib_for_every_body_size() {
        // 262144 / 205 and 262144 / 1129, rounded down.
        assert_eq!(case(100).records_per_batch(), 1278);
        assert_eq!(case(1024).records_per_batch(), 232);
        assert_eq!(case(100).payload_bytes_per_batch(), 127_800);
        assert_eq!(case(1024).payload_bytes_per_batch(), 237_568);
        // A record larger than the target still goes one per batch.
        assert_eq!(case(300 << 10).records_per_batch(), 1);
    }

    #[test]
    fn batch_count_covers_the_payload_asked_for() {
        let small = case(100);
        assert_eq!(small.batch_count(1), 1);
        assert_eq!(small.batch_count(127_800), 1);
        assert_eq!(small.batch_count(127_801), 2);
        assert_eq!(small.batch_count(1 << 30), (1u64 << 30).div_ceil(127_800));
        // Empty bodies carry no payload: the encoded records stand in for it.
        let empty = case(0);
        assert_eq!(empty.records_per_batch(), 2496);
        assert_eq!(empty.batch_count(2496 * 105), 1);
        assert_eq!(empty.batch_count(2496 * 105 + 1), 2);
    }
}
