//! The `storage` subcommand: measures the disk under `--dir` with a raw O_DIRECT write, then
//! the storage engine on the same disk for each record size and flush mode, and reports
//! each engine case as a fraction of the raw speed.
//!
//! It owns the run's directory layout (`<dir>/spillway-perf-<pid>-<nanos>/`, holding the
//! baseline's file and one store directory at a time) and the order of the cases. The
//! measured I/O happens in [`raw_write`](crate::raw_write) and
//! [`engine_append`](crate::engine_append), never here.

use std::path::Path;

use spillway_storage::FlushMode;

use crate::engine_append::{self, EngineCase, MIN_RECORD_BYTES};
use crate::error::PerfError;
use crate::raw_write;
use crate::report::{CaseReport, StorageReport};
use crate::run_directory::{file_system_name, RunDirectory};

/// Record sizes measured, whole encoded records. The format's fixed part plus the topic
/// already take [`MIN_RECORD_BYTES`] (105), so "small records" are 128 bytes.
pub const RECORD_BYTES_CASES: [u32; 2] = [128, 1024];
/// Flush modes measured, for each record size.
pub const FLUSH_CASES: [FlushMode; 2] = [FlushMode::Sync, FlushMode::Async];

const _: () = {
    let mut index = 0;
    while index < RECORD_BYTES_CASES.len() {
        assert!(RECORD_BYTES_CASES[index] as usize >= MIN_RECORD_BYTES);
        index += 1;
    }
};

/// Runs the baseline and every engine case with `bytes` each, in a fresh directory under
/// `dir` that is removed at the end.
pub fn run(dir: &Path, bytes: u64) -> Result<StorageReport, PerfError> {
    if bytes == 0 {
        return Err(PerfError::Usage {
            reason: "--bytes must be above 0".into(),
        });
    }
    let run_directory = RunDirectory::create(dir)?;
    let file_system = file_system_name(dir)?;

    tracing::info!(bytes, dir = %run_directory.path().display(), "raw O_DIRECT write");
    let raw = raw_write::measure(run_directory.path(), bytes)?;
    let raw_write_mb_s = raw.mb_s();
    tracing::info!(
        mb_s = format_args!("{raw_write_mb_s:.1}"),
        seconds = format_args!("{:.2}", raw.elapsed.as_secs_f64()),
        "raw O_DIRECT write done"
    );

    let mut cases = Vec::new();
    for record_bytes in RECORD_BYTES_CASES {
        for flush in FLUSH_CASES {
            let case = EngineCase {
                record_bytes,
                flush,
            };
            let store_dir = run_directory
                .path()
                .join(format!("store-{record_bytes}-{}", case.flush_name()));
            std::fs::create_dir(&store_dir)
                .map_err(|source| PerfError::io("creating store directory", &store_dir, source))?;
            tracing::info!(%case, "engine case");
            let result = engine_append::run_case(case, store_dir.clone(), bytes)?;
            std::fs::remove_dir_all(&store_dir)
                .map_err(|source| PerfError::io("removing store directory", &store_dir, source))?;

            let seconds = result.elapsed.as_secs_f64();
            let mb_s = result.record_bytes_appended as f64 / seconds / 1e6;
            let percentile = |quantile| result.latency_us.value_at_quantile(quantile) as f64;
            let case_report = CaseReport {
                record_bytes,
                flush: case.flush_name(),
                mb_s,
                records_per_s: result.records as f64 / seconds,
                ratio_to_raw: mb_s / raw_write_mb_s,
                latency_us_p50: percentile(0.5),
                latency_us_p99: percentile(0.99),
                latency_us_p999: percentile(0.999),
            };
            tracing::info!(
                %case,
                mb_s = format_args!("{mb_s:.1}"),
                ratio_to_raw = format_args!("{:.3}", case_report.ratio_to_raw),
                latency_us_p99 = case_report.latency_us_p99,
                "engine case done"
            );
            cases.push(case_report);
        }
    }
    run_directory.remove()?;

    Ok(StorageReport {
        raw_write_mb_s,
        cases,
        dir: dir.to_path_buf(),
        file_system,
        bytes_per_case: bytes,
    })
}
