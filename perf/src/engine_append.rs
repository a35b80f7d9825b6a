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
use spillway_storage::record::{RecordBuilder, FIXED_BYTES};
use spillway_storage::{FlushMode, QueueId, ShardStore, StorageConfig, StorageError};

use crate::error::PerfError;

/// Concurrent appender tasks per case.
pub const APPENDER_TASKS: usize = 64;
/// Queues the appends are spread over (each task walks them round-robin).
pub const QUEUE_COUNT: u32 = 8;
/// Topic of every benchmark record.
pub const TOPIC: &str = "bench";
/// Target batch size for records of at least [`LARGE_RECORD_BYTES`].
pub const LARGE_BATCH_BYTES: usize = 256 << 10;
/// Target batch size for smaller records.
pub const SMALL_BATCH_BYTES: usize = 64 << 10;
/// Records this size and up use [`LARGE_BATCH_BYTES`].
pub const LARGE_RECORD_BYTES: u32 = 1024;

/// Smallest record the format can hold with the benchmark's topic and no body.
pub const MIN_RECORD_BYTES: usize = FIXED_BYTES + TOPIC.len();

/// One benchmark case: record size and flush mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineCase {
    /// Size of each whole encoded record (header, topic and body).
    pub record_bytes: u32,
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

    /// Body size that makes a whole encoded record `record_bytes` long.
    pub fn body_bytes(&self) -> Result<usize, PerfError> {
        let overhead = RecordBuilder::new(&[]).topic(TOPIC).encoded_len();
        (self.record_bytes as usize)
            .checked_sub(overhead)
            .ok_or_else(|| PerfError::Record {
                record_bytes: self.record_bytes,
                reason: format!("a record with topic {TOPIC:?} takes at least {overhead} bytes"),
            })
    }

    /// Records per append batch.
    pub fn records_per_batch(&self) -> usize {
        let target = if self.record_bytes >= LARGE_RECORD_BYTES {
            LARGE_BATCH_BYTES
        } else {
            SMALL_BATCH_BYTES
        };
        (target / self.record_bytes as usize).max(1)
    }
}

impl fmt::Display for EngineCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} B records, flush {}",
            self.record_bytes,
            self.flush_name()
        )
    }
}

/// What one case measured.
#[derive(Debug)]
pub struct EngineResult {
    /// Encoded record bytes appended (and acknowledged).
    pub record_bytes_appended: u64,
    /// Records appended.
    pub records: u64,
    /// From the first append to the last acknowledgement.
    pub elapsed: Duration,
    /// Per-append latency, call to durable, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Runs `case` in a fresh glommio executor on CPU 0 against a new store in `store_dir`,
/// appending at least `total_bytes` of records. Blocks until the executor is done.
pub fn run_case(
    case: EngineCase,
    store_dir: PathBuf,
    total_bytes: u64,
) -> Result<EngineResult, PerfError> {
    let executor_error = |reason: String| PerfError::Executor {
        case: case.to_string(),
        reason,
    };
    let handle = LocalExecutorBuilder::new(Placement::Fixed(0))
        .name("spillway-perf")
        .spawn(move || async move { append_on_executor(case, store_dir, total_bytes).await })
        .map_err(|error| executor_error(error.to_string()))?;
    handle
        .join()
        .map_err(|error| executor_error(error.to_string()))?
}

async fn append_on_executor(
    case: EngineCase,
    store_dir: PathBuf,
    total_bytes: u64,
) -> Result<EngineResult, PerfError> {
    let batch = Rc::new(encode_batch(case)?);
    let records_per_batch = case.records_per_batch() as u64;
    let batch_count = total_bytes.div_ceil(batch.len() as u64).max(1);

    let mut config = StorageConfig::new(store_dir);
    config.flush = case.flush;
    let store = Rc::new(
        ShardStore::open(config)
            .await
            .map_err(storage_error(case, "opening the store"))?,
    );

    let batches_left = Rc::new(Cell::new(batch_count));
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    let appenders: Vec<_> = (0..APPENDER_TASKS)
        .map(|task_index| {
            let store = Rc::clone(&store);
            let batch = Rc::clone(&batch);
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
    let elapsed = start.elapsed();
    if let Some(error) = first_error {
        return Err(error);
    }
    let stats = store.log_stats();
    let cpu_busy = (thread_cpu_time() - cpu_start).as_secs_f64() / elapsed.as_secs_f64();
    tracing::info!(
        cpu_busy = format!("{:.0}%", cpu_busy * 100.0),
        writes = stats.writes,
        average_write_bytes = stats.bytes_written / stats.writes.max(1),
        syncs = stats.syncs,
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
        record_bytes_appended: appends * batch.len() as u64,
        records: appends * records_per_batch,
        elapsed,
        latency_us,
    })
}

/// An empty latency histogram: microseconds, 3 significant digits, growing as needed.
fn new_latency_histogram() -> Result<Histogram<u64>, PerfError> {
    Histogram::new(3).map_err(histogram_error)
}

fn histogram_error(error: impl fmt::Display) -> PerfError {
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

/// One batch of identical records of `case.record_bytes` each.
fn encode_batch(case: EngineCase) -> Result<Vec<u8>, PerfError> {
    let body: Vec<u8> = (0..case.body_bytes()?).map(|index| index as u8).collect();
    let records_per_batch = case.records_per_batch();
    let mut batch = Vec::with_capacity(records_per_batch * case.record_bytes as usize);
    for _ in 0..records_per_batch {
        let encoded = RecordBuilder::new(&body)
            .topic(TOPIC)
            .encode(&mut batch)
            .map_err(|error| PerfError::Record {
                record_bytes: case.record_bytes,
                reason: error.to_string(),
            })?;
        assert_eq!(
            encoded, case.record_bytes as usize,
            "record size arithmetic"
        );
    }
    Ok(batch)
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
    use super::*;

    #[test]
    fn batches_hold_records_of_exactly_the_case_size() {
        for record_bytes in [MIN_RECORD_BYTES as u32, 128, 1024, 4096] {
            let case = EngineCase {
                record_bytes,
                flush: FlushMode::Sync,
            };
            let batch = encode_batch(case).unwrap();
            assert_eq!(
                batch.len(),
                case.records_per_batch() * record_bytes as usize
            );
        }
    }

    #[test]
    fn batch_sizes_follow_the_record_size() {
        let small = EngineCase {
            record_bytes: 128,
            flush: FlushMode::Async,
        };
        let large = EngineCase {
            record_bytes: 1024,
            flush: FlushMode::Async,
        };
        assert_eq!(small.records_per_batch(), 512);
        assert_eq!(large.records_per_batch(), 256);
    }

    #[test]
    fn records_smaller_than_the_header_are_refused() {
        let case = EngineCase {
            record_bytes: 100,
            flush: FlushMode::Sync,
        };
        assert!(case.body_bytes().is_err());
    }
}
