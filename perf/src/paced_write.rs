//! The disk's own append-to-durable latency at a given byte rate: what the best possible
//! `flush = "sync"` log could promise at that rate on this disk, with no engine, network
//! or client in the way. The floor under a cluster's end-to-end latency at the same rate.
//!
//! Bytes *arrive* at a steady `mb_s` (10^6 bytes per second) from the start. One writer
//! group-commits them like the engine does, ideally: whenever it is idle it takes every
//! 4 KiB block that has fully arrived (at most [`MAX_GROUP_BYTES`]), writes them with one
//! O_DIRECT write at the next offset of a preallocated file and fdatasyncs (linked in one
//! `io_uring` submission, [`SyncWriter`]); with nothing arrived it sleeps until the next
//! block has. Each block's latency is the time from its last byte's arrival to the
//! completion of the fdatasync covering it, so a slow write shows in the blocks queueing
//! behind it as well as in its own. Runs on the calling thread for `duration`, then removes
//! its file. The engine overlaps a group's fdatasync with the next group's write, so it can
//! do better than this model on throughput, never on a single group's latency.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::disk_baseline::LatencySummaryUs;
use crate::engine_append::histogram_error;
use crate::error::PerfError;
use crate::raw_write::{open_direct, preallocate, ALIGNMENT_BYTES};
use crate::run_directory::{file_system_name, RunDirectory};
use crate::sync_write::SyncWriter;

/// The unit of arrival and of writing.
pub const BLOCK_BYTES: u64 = ALIGNMENT_BYTES as u64;
/// Largest group written at once (the engine's default write buffer is 1 MiB; a larger
/// cap lets the model catch up after a stall instead of queueing behind it forever).
pub const MAX_GROUP_BYTES: usize = 4 << 20;
/// Highest rate accepted, MB/s.
pub const MAX_MB_S: f64 = 100_000.0;
/// Longest run accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

const _: () = assert!(MAX_GROUP_BYTES % ALIGNMENT_BYTES == 0);

/// What the run saw.
#[derive(Clone, Debug)]
pub struct PacedWriteResult {
    /// Each 4 KiB block's time from arrival to durable, in nanoseconds.
    pub latency_ns: Histogram<u64>,
    /// Bytes made durable.
    pub bytes: u64,
    /// Write + fdatasync rounds (groups).
    pub groups: u64,
    /// From the start to the last completion.
    pub elapsed: Duration,
}

impl PacedWriteResult {
    /// The rate actually made durable, in MB/s (10^6 bytes).
    pub fn mb_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Group-commits a stream arriving at `mb_s` for `duration` into a new file in `dir`; see
/// the module docs.
pub fn measure(dir: &Path, mb_s: f64, duration: Duration) -> Result<PacedWriteResult, PerfError> {
    if !(mb_s.is_finite() && mb_s > 0.0 && mb_s <= MAX_MB_S) {
        return Err(PerfError::Usage {
            reason: format!("the rate must be above 0 and at most {MAX_MB_S} MB/s, not {mb_s}"),
        });
    }
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(PerfError::Usage {
            reason: format!(
                "the duration must be above 0 and at most {} s",
                MAX_DURATION.as_secs()
            ),
        });
    }
    let bytes_per_ns = mb_s * 1e6 / 1e9;
    // Everything that can arrive, rounded up to whole groups.
    let arriving = (mb_s * 1e6 * duration.as_secs_f64()).ceil() as u64;
    let file_bytes =
        arriving.div_ceil(MAX_GROUP_BYTES as u64) * MAX_GROUP_BYTES as u64 + MAX_GROUP_BYTES as u64;
    let path = dir.join("paced-write.dat");
    let file = open_direct(&path, OpenOptions::new().write(true).create_new(true))?;
    preallocate(&file, &path, file_bytes)?;
    let mut writer = SyncWriter::new(&file, &path, MAX_GROUP_BYTES)?;
    let mut latency_ns = Histogram::<u64>::new(3).map_err(histogram_error)?;

    // When block `n` (0-based) has fully arrived, in nanoseconds since `start`.
    let arrival_ns = |block: u64| ((block + 1) * BLOCK_BYTES) as f64 / bytes_per_ns;
    let mut durable_blocks = 0u64;
    let mut groups = 0u64;
    let start = Instant::now();
    loop {
        let now_ns = start.elapsed().as_nanos() as f64;
        if now_ns >= duration.as_nanos() as f64 {
            break;
        }
        let arrived_blocks = (now_ns * bytes_per_ns) as u64 / BLOCK_BYTES;
        if arrived_blocks == durable_blocks {
            let wait_ns = arrival_ns(durable_blocks) - now_ns;
            std::thread::sleep(Duration::from_nanos(wait_ns.max(0.0) as u64));
            continue;
        }
        let blocks = (arrived_blocks - durable_blocks).min(MAX_GROUP_BYTES as u64 / BLOCK_BYTES);
        // At most MAX_GROUP_BYTES.
        let length = (blocks * BLOCK_BYTES) as usize;
        writer.write_and_sync(durable_blocks * BLOCK_BYTES, length)?;
        let done_ns = start.elapsed().as_nanos() as f64;
        for block in durable_blocks..durable_blocks + blocks {
            let nanos = (done_ns - arrival_ns(block)).max(1.0) as u64;
            latency_ns.record(nanos).map_err(histogram_error)?;
        }
        durable_blocks += blocks;
        groups += 1;
    }
    let elapsed = start.elapsed();

    drop(writer);
    drop(file);
    std::fs::remove_file(&path).map_err(|source| PerfError::io("removing", &path, source))?;
    Ok(PacedWriteResult {
        latency_ns,
        bytes: durable_blocks * BLOCK_BYTES,
        groups,
        elapsed,
    })
}

/// Runs [`measure`] in a fresh directory under `dir` (removed at the end) and reports.
pub fn run(dir: &Path, mb_s: f64, duration: Duration) -> Result<PacedReport, PerfError> {
    let run_directory = RunDirectory::create(dir)?;
    let file_system = file_system_name(dir)?;
    tracing::info!(
        mb_s,
        seconds = duration.as_secs_f64(),
        "paced O_DIRECT writes, each group + fdatasync"
    );
    let result = measure(run_directory.path(), mb_s, duration)?;
    run_directory.remove()?;
    Ok(PacedReport {
        dir: dir.display().to_string(),
        mb_s_asked: mb_s,
        mb_s: result.mb_s(),
        groups: result.groups,
        latency_us: LatencySummaryUs::from_nanos(&result.latency_ns),
        file_system,
        seconds: result.elapsed.as_secs_f64(),
    })
}

/// What a `disk-paced` run reports. The JSON shape is a contract for scripts: one object
/// with exactly the serialized fields; MB means 10^6 bytes.
#[derive(Clone, Debug, Serialize)]
pub struct PacedReport {
    /// The `--dir` measured (the run itself wrote into a subdirectory).
    pub dir: String,
    /// The arrival rate asked for.
    pub mb_s_asked: f64,
    /// The rate made durable (below `mb_s_asked` if the disk could not keep up).
    pub mb_s: f64,
    /// Write + fdatasync rounds.
    pub groups: u64,
    /// Each 4 KiB block's time from arrival to durable.
    pub latency_us: LatencySummaryUs,
    /// File system under `dir` (human output only).
    #[serde(skip)]
    pub file_system: &'static str,
    /// How long the run took (human output only).
    #[serde(skip)]
    pub seconds: f64,
}

impl PacedReport {
    /// The JSON document, on one line.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let latency = &self.latency_us;
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "spillway-perf disk-paced: {} ({}), bytes arriving at {:.1} MB/s for {:.1} s, \
             group-committed by one writer (O_DIRECT write + fdatasync per group); MB is 10^6 \
             bytes",
            self.dir, self.file_system, self.mb_s_asked, self.seconds,
        );
        let _ = writeln!(
            out,
            "durable: {:.1} MB/s in {} groups ({:.0} KB per group on average)",
            self.mb_s,
            self.groups,
            self.mb_s * 1e6 * self.seconds / 1e3 / self.groups.max(1) as f64,
        );
        let _ = writeln!(
            out,
            "arrival to durable, per 4 KiB block: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, \
             max {:.1} us",
            latency.p50, latency.p99, latency.p999, latency.max,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_directory::disk_test_dir;

    #[test]
    fn keeps_up_with_a_modest_rate_and_removes_its_file() {
        let dir = disk_test_dir("paced-write");
        let result = measure(dir.path(), 20.0, Duration::from_millis(500)).unwrap();
        // 10 MB arrive; all but the blocks still arriving at the end are durable.
        let arrived = 20e6 * result.elapsed.as_secs_f64();
        assert!(
            result.bytes as f64 <= arrived,
            "{} > {arrived}",
            result.bytes
        );
        assert!(result.bytes as f64 >= arrived - 2.0 * MAX_GROUP_BYTES as f64);
        assert_eq!(result.latency_ns.len(), result.bytes / BLOCK_BYTES);
        assert!(result.groups > 1 && result.groups <= result.latency_ns.len());
        // No block is durable before it arrived, nor later than the run's end.
        assert!(result.latency_ns.min() > 0);
        assert!(result.latency_ns.max() as f64 <= result.elapsed.as_nanos() as f64 * 1.001);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_rates_and_durations_are_refused_before_any_io() {
        let missing = Path::new("/nonexistent/spillway-perf");
        for (mb_s, duration) in [
            (0.0, Duration::from_secs(1)),
            (f64::NAN, Duration::from_secs(1)),
            (MAX_MB_S * 2.0, Duration::from_secs(1)),
            (10.0, Duration::ZERO),
            (10.0, MAX_DURATION * 2),
        ] {
            assert!(matches!(
                measure(missing, mb_s, duration),
                Err(PerfError::Usage { .. })
            ));
        }
    }
}
