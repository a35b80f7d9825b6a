//! The `storage` subcommand: in each of `--rounds` rounds, measures the storage engine on the
//! disk under `--dir` for each message body size and flush mode, each case right after a
//! raw O_DIRECT write of the same size on the same disk; reports each engine case as a
//! fraction of the raw speed measured just before it, as medians over the rounds (see
//! [`rounds`](crate::rounds)).
//!
//! Why a baseline per case rather than one per round: this VM's disk slows down under
//! sustained writing (a round writes several gigabytes) and recovers when idle, so a case
//! compared with a baseline taken a few gigabytes earlier was judged against a faster disk
//! than the one it ran on. Adjacent, the two see the same disk.
//!
//! Each engine case measures a warm store: it first appends the store's tail-cache size
//! (256 MiB) untimed ([`engine_append`](crate::engine_append)), because a cold store
//! allocates and page-faults a fresh write buffer per write until its tail cache is full,
//! and only then recycles them as a broker that has been running does.
//!
//! It owns the run's directory layout (`<dir>/spillway-perf-<pid>-<nanos>/`, holding the
//! baseline's file and one store directory at a time, each case getting a fresh one in
//! every round) and the order of the cases. The measured I/O happens in
//! [`raw_write`](crate::raw_write) and [`engine_append`](crate::engine_append), never here.

use std::path::Path;

use spillway_storage::FlushMode;

use crate::engine_append::{self, EngineCase};
use crate::error::PerfError;
use crate::raw_write;
use crate::report::StorageReport;
use crate::rounds::{median, CaseRound, CaseRounds};
use crate::run_directory::{file_system_name, RunDirectory};

/// Message body sizes measured (the JSON's `record_bytes`), as message-queue benchmarks
/// quote "message size". Each record is `RecordBuilder::new(&body).topic("bench")`.
pub const RECORD_BYTES_CASES: [u32; 2] = [100, 1024];
/// Flush modes measured, for each body size.
pub const FLUSH_CASES: [FlushMode; 2] = [FlushMode::Sync, FlushMode::Async];

/// Runs `rounds` rounds of every engine case, each after its own baseline, each writing
/// `payload_bytes` (the baseline) or appending records carrying that many body bytes (each
/// case), in a fresh directory under `dir` that is removed at the end.
pub fn run(dir: &Path, payload_bytes: u64, rounds: u32) -> Result<StorageReport, PerfError> {
    if payload_bytes == 0 {
        return Err(PerfError::Usage {
            reason: "--bytes must be above 0".into(),
        });
    }
    if rounds == 0 {
        return Err(PerfError::Usage {
            reason: "--rounds must be at least 1".into(),
        });
    }
    let run_directory = RunDirectory::create(dir)?;
    let file_system = file_system_name(dir)?;

    let mut raw_write_mb_s_samples = Vec::new();
    let mut cases = RECORD_BYTES_CASES
        .into_iter()
        .flat_map(|body_bytes| FLUSH_CASES.map(|flush| EngineCase { body_bytes, flush }))
        .map(CaseRounds::new)
        .collect::<Result<Vec<_>, _>>()?;

    for round in 1..=rounds {
        for case_rounds in &mut cases {
            let case = case_rounds.case();
            tracing::info!(
                round,
                %case,
                bytes = payload_bytes,
                dir = %run_directory.path().display(),
                "raw O_DIRECT write"
            );
            let raw = raw_write::measure(run_directory.path(), payload_bytes)?;
            let raw_write_mb_s = raw.mb_s();
            raw_write_mb_s_samples.push(raw_write_mb_s);
            tracing::info!(
                round,
                mb_s = format_args!("{raw_write_mb_s:.1}"),
                seconds = format_args!("{:.2}", raw.elapsed.as_secs_f64()),
                "raw O_DIRECT write done"
            );
            let store_dir = run_directory.path().join(format!(
                "store-{round}-{}-{}",
                case.body_bytes,
                case.flush_name()
            ));
            std::fs::create_dir(&store_dir)
                .map_err(|source| PerfError::io("creating store directory", &store_dir, source))?;
            tracing::info!(round, %case, "engine case");
            let result = engine_append::run_case(case, store_dir.clone(), payload_bytes)?;
            std::fs::remove_dir_all(&store_dir)
                .map_err(|source| PerfError::io("removing store directory", &store_dir, source))?;

            let case_round = CaseRound::new(&result, raw_write_mb_s);
            tracing::info!(
                round,
                %case,
                mb_s = format_args!("{:.1}", case_round.mb_s),
                stored_mb_s = format_args!("{:.1}", case_round.stored_mb_s),
                ratio_to_raw = format_args!("{:.3}", case_round.ratio_to_raw),
                latency_us_p99 = result.latency_us.value_at_quantile(0.99),
                "engine case done"
            );
            case_rounds.push(case_round, &result.latency_us)?;
        }
    }
    run_directory.remove()?;

    Ok(StorageReport {
        raw_write_mb_s: median(&raw_write_mb_s_samples),
        cases: cases.iter().map(CaseRounds::to_report).collect(),
        rounds,
        raw_write_mb_s_samples,
        dir: dir.to_path_buf(),
        file_system,
        payload_bytes_per_case: payload_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rounds_or_bytes_are_refused_before_any_io() {
        let missing = Path::new("/nonexistent/spillway-perf");
        assert!(matches!(
            run(missing, 1 << 20, 0),
            Err(PerfError::Usage { .. })
        ));
        assert!(matches!(run(missing, 0, 3), Err(PerfError::Usage { .. })));
    }
}
