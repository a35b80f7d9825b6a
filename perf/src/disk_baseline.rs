//! The `disk` subcommand: the disk's own speed under `--dir`, with no storage engine in the
//! way, so a cluster benchmark can report its figures as ratios to a baseline measured in
//! the same run (`perf/scripts/bench_cluster.sh`).
//!
//! It owns the order of the three measurements, the run's directory
//! (`<dir>/spillway-perf-<pid>-<nanos>/`, see [`RunDirectory`]) and the report: the JSON
//! document (`--json`) and the human lines. The measured I/O happens in
//! [`raw_write`](crate::raw_write), [`raw_read`](crate::raw_read) and
//! [`sync_write`](crate::sync_write), never here:
//!
//! 1. sequential write: `--bytes` in 1 MiB O_DIRECT writes, 8 in flight, one fdatasync;
//! 2. sequential read: that same file read back in 1 MiB O_DIRECT reads, 8 in flight;
//! 3. sync write latency: 4 KiB O_DIRECT write + fdatasync, one at a time, up to
//!    `sync_writes` of them or [`SYNC_WRITE_TIME_LIMIT`], whichever comes first.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::PerfError;
use crate::raw_write::{BLOCK_BYTES, QUEUE_DEPTH};
use crate::run_directory::{file_system_name, RunDirectory};
use crate::sync_write;
use crate::{raw_read, raw_write};

/// Sync writes the `disk` subcommand makes (fewer if [`SYNC_WRITE_TIME_LIMIT`] comes first).
pub const SYNC_WRITES: u64 = 2000;
/// No new sync write starts after this long.
pub const SYNC_WRITE_TIME_LIMIT: Duration = Duration::from_secs(3);

/// Runs the three measurements on the disk under `dir`: up to `sync_writes` sync writes,
/// then a sequential write and read of `bytes` (rounded up to 4096), in a fresh directory
/// under `dir` that is removed at the end.
pub fn run(dir: &Path, bytes: u64, sync_writes: u64) -> Result<DiskReport, PerfError> {
    if bytes == 0 {
        return Err(PerfError::Usage {
            reason: "--bytes must be above 0".into(),
        });
    }
    if sync_writes == 0 {
        return Err(PerfError::Usage {
            reason: "the number of sync writes must be above 0".into(),
        });
    }
    let run_directory = RunDirectory::create(dir)?;
    let file_system = file_system_name(dir)?;
    let sequential_path = run_directory.path().join("sequential.dat");

    // The sync writes first: right after a gigabyte of sequential writes this VM's disk
    // was still busy with them, and one run measured 99 sync writes at a p50 of 23 ms.
    tracing::info!(
        sync_writes,
        time_limit_s = SYNC_WRITE_TIME_LIMIT.as_secs_f64(),
        "4 KiB O_DIRECT write + fdatasync, one at a time"
    );
    let sync = sync_write::measure(run_directory.path(), sync_writes, SYNC_WRITE_TIME_LIMIT)?;
    tracing::info!(bytes, dir = %run_directory.path().display(), "sequential O_DIRECT write");
    let write = raw_write::write_file(&sequential_path, bytes)?;
    tracing::info!(
        mb_s = format_args!("{:.1}", write.mb_s()),
        seconds = format_args!("{:.2}", write.elapsed.as_secs_f64()),
        "sequential O_DIRECT write done; reading the file back"
    );
    let read = raw_read::measure(&sequential_path)?;
    tracing::info!(
        mb_s = format_args!("{:.1}", read.mb_s()),
        seconds = format_args!("{:.2}", read.elapsed.as_secs_f64()),
        "sequential O_DIRECT read done"
    );
    std::fs::remove_file(&sequential_path)
        .map_err(|source| PerfError::io("removing", &sequential_path, source))?;

    run_directory.remove()?;

    Ok(DiskReport {
        dir: dir.display().to_string(),
        write_mb_s: write.mb_s(),
        read_mb_s: read.mb_s(),
        sync_write_latency_us: LatencySummaryUs::from_nanos(&sync.latency_ns),
        sync_writes: sync.writes(),
        file_system,
        bytes: write.bytes,
        sync_writes_asked: sync_writes,
        sync_write_seconds: sync.elapsed.as_secs_f64(),
    })
}

/// What a `disk` run reports. The JSON shape is a contract for scripts: one object with
/// exactly the serialized fields; MB means 10^6 bytes. Fields marked "human output only"
/// are skipped in the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct DiskReport {
    /// The `--dir` measured (the run itself wrote into a subdirectory).
    pub dir: String,
    /// Sequential O_DIRECT write speed, fdatasync included.
    pub write_mb_s: f64,
    /// Sequential O_DIRECT read speed of the file just written.
    pub read_mb_s: f64,
    /// Latency of one 4 KiB O_DIRECT write + fdatasync at queue depth 1.
    pub sync_write_latency_us: LatencySummaryUs,
    /// Sync writes measured (the histogram's samples).
    pub sync_writes: u64,
    /// File system under `dir` (human output only).
    #[serde(skip)]
    pub file_system: &'static str,
    /// Bytes written and read sequentially (human output only).
    #[serde(skip)]
    pub bytes: u64,
    /// Sync writes asked for; fewer ran if the time limit came first (human output only).
    #[serde(skip)]
    pub sync_writes_asked: u64,
    /// How long the sync writes took, in all (human output only).
    #[serde(skip)]
    pub sync_write_seconds: f64,
}

/// Percentiles of a latency histogram, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencySummaryUs {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Highest sample (within the histogram's 3 significant digits).
    pub max: f64,
}

impl LatencySummaryUs {
    /// The summary of a histogram of nanoseconds.
    pub fn from_nanos(latency_ns: &Histogram<u64>) -> Self {
        let us = |nanos: u64| nanos as f64 / 1e3;
        LatencySummaryUs {
            p50: us(latency_ns.value_at_quantile(0.50)),
            p99: us(latency_ns.value_at_quantile(0.99)),
            p999: us(latency_ns.value_at_quantile(0.999)),
            max: us(latency_ns.max()),
        }
    }
}

impl DiskReport {
    /// The JSON document, on one line.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let latency = &self.sync_write_latency_us;
        let stopped_early = if self.sync_writes < self.sync_writes_asked {
            format!(
                ", stopped at the {} s limit",
                SYNC_WRITE_TIME_LIMIT.as_secs()
            )
        } else {
            String::new()
        };
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "spillway-perf disk: {} ({}), {} bytes ({:.1} MB) written then read back; MB is \
             10^6 bytes",
            self.dir,
            self.file_system,
            self.bytes,
            self.bytes as f64 / 1e6,
        );
        let _ = writeln!(
            out,
            "sequential write: {:.1} MB/s ({} MiB O_DIRECT writes, {QUEUE_DEPTH} in flight, \
             one fdatasync)",
            self.write_mb_s,
            BLOCK_BYTES >> 20,
        );
        let _ = writeln!(
            out,
            "sequential read:  {:.1} MB/s ({} MiB O_DIRECT reads, {QUEUE_DEPTH} in flight)",
            self.read_mb_s,
            BLOCK_BYTES >> 20,
        );
        let _ = writeln!(
            out,
            "sync write latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us \
             ({} KiB O_DIRECT write + fdatasync, one at a time; {} writes in {:.2} \
             s{stopped_early})",
            latency.p50,
            latency.p99,
            latency.p999,
            latency.max,
            sync_write::WRITE_BYTES >> 10,
            self.sync_writes,
            self.sync_write_seconds,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_directory::disk_test_dir;

    fn sample() -> DiskReport {
        DiskReport {
            dir: "/data".into(),
            write_mb_s: 1500.0,
            read_mb_s: 2500.5,
            sync_write_latency_us: LatencySummaryUs {
                p50: 45.5,
                p99: 120.0,
                p999: 480.5,
                max: 900.0,
            },
            sync_writes: 1234,
            file_system: "ext4",
            bytes: 1 << 30,
            sync_writes_asked: 2000,
            sync_write_seconds: 3.0,
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let value: serde_json::Value = serde_json::from_str(&sample().to_json().unwrap()).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "dir": "/data",
                "write_mb_s": 1500.0,
                "read_mb_s": 2500.5,
                "sync_write_latency_us": {"p50": 45.5, "p99": 120.0, "p999": 480.5, "max": 900.0},
                "sync_writes": 1234
            })
        );
        assert!(!sample().to_json().unwrap().contains('\n'));
    }

    #[test]
    fn text_gives_every_figure_and_says_when_the_time_limit_cut_in() {
        let text = sample().to_text();
        assert!(text.contains("/data (ext4)"), "{text}");
        assert!(text.contains("1073741824 bytes (1073.7 MB)"), "{text}");
        assert!(
            text.contains("write: 1500.0 MB/s (1 MiB O_DIRECT writes, 8 in flight"),
            "{text}"
        );
        assert!(text.contains("read:  2500.5 MB/s"), "{text}");
        assert!(
            text.contains("p50 45.5 us, p99 120.0 us, p99.9 480.5 us"),
            "{text}"
        );
        assert!(text.contains("max 900.0 us"), "{text}");
        assert!(
            text.contains("1234 writes in 3.00 s, stopped at the 3 s limit"),
            "{text}"
        );
        let all_done = DiskReport {
            sync_writes: 2000,
            ..sample()
        };
        assert!(!all_done.to_text().contains("stopped"));
    }

    #[test]
    fn latency_summary_converts_nanoseconds_to_microseconds() {
        let mut latency_ns = Histogram::<u64>::new(3).unwrap();
        for nanos in 1..=1000u64 {
            latency_ns.record(nanos * 1000).unwrap();
        }
        let summary = LatencySummaryUs::from_nanos(&latency_ns);
        assert!((summary.p50 - 500.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p99 - 990.0).abs() < 1.0, "{summary:?}");
        assert!((summary.p999 - 999.0).abs() < 1.0, "{summary:?}");
        assert!((summary.max - 1000.0).abs() < 1.0, "{summary:?}");
    }

    #[test]
    fn zero_bytes_or_sync_writes_are_refused_before_any_io() {
        let missing = Path::new("/nonexistent/spillway-perf");
        assert!(matches!(run(missing, 0, 10), Err(PerfError::Usage { .. })));
        assert!(matches!(
            run(missing, 1 << 20, 0),
            Err(PerfError::Usage { .. })
        ));
    }

    #[test]
    fn tmpfs_is_refused() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() || file_system_name(shm).unwrap() != "tmpfs" {
            eprintln!("skipping: no tmpfs at /dev/shm");
            return;
        }
        assert!(matches!(
            run(shm, 1 << 20, 10),
            Err(PerfError::Tmpfs { .. })
        ));
    }

    /// The probe for real, small: 8 MiB and 200 sync writes on the disk under target/tmp.
    #[test]
    fn measures_a_real_disk_and_leaves_nothing_behind() {
        let dir = disk_test_dir("disk-baseline");
        let report = run(dir.path(), 8 << 20, 200).unwrap();
        assert_eq!(report.bytes, 8 << 20);
        assert!(report.write_mb_s > 0.0 && report.write_mb_s.is_finite());
        assert!(report.read_mb_s > 0.0 && report.read_mb_s.is_finite());
        // All 200 unless the disk needed more than the time limit for them.
        assert!((1..=200).contains(&report.sync_writes), "{report:?}");
        assert!(report.sync_writes == 200 || report.sync_write_seconds >= 3.0);
        let latency = report.sync_write_latency_us;
        assert!(latency.p50 > 0.0, "{latency:?}");
        assert!(latency.p50 <= latency.p99, "{latency:?}");
        assert!(latency.p99 <= latency.p999, "{latency:?}");
        assert!(latency.p999 <= latency.max, "{latency:?}");
        assert_eq!(report.dir, dir.path().display().to_string());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let value: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
        assert_eq!(value["sync_writes"], report.sync_writes);
    }
}
