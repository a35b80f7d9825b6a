//! Combining the rounds of a `storage` run into one report: medians of the per-round
//! speeds and ratios, the spread of the ratios, and latency histograms merged over rounds.
//!
//! Each round's ratio pairs the engine case with the raw baseline measured in the same
//! round, so a disk that is fast in one round and slow in the next moves both sides of the
//! ratio together. Nothing here does I/O.

use hdrhistogram::Histogram;

use crate::engine_append::{histogram_error, new_latency_histogram, EngineCase, EngineResult};
use crate::error::PerfError;
use crate::report::CaseReport;

/// Median of `values`: the middle one, or the mean of the two middle ones for an even
/// count. NaN for no values (a run has at least one round, so reports never see it).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        count if count % 2 == 1 => sorted[middle],
        _ => (sorted[middle - 1] + sorted[middle]) / 2.0,
    }
}

/// What one engine case measured in one round, as speeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaseRound {
    /// Message body bytes appended per second, in 10^6 bytes.
    pub mb_s: f64,
    /// Whole encoded record bytes appended per second, in 10^6 bytes.
    pub stored_mb_s: f64,
    /// Records appended per second.
    pub records_per_s: f64,
    /// `mb_s` over the raw write speed measured in the same round.
    pub ratio_to_raw: f64,
}

impl CaseRound {
    /// The speeds of `result`, with the ratio taken to this round's `raw_write_mb_s`.
    pub fn new(result: &EngineResult, raw_write_mb_s: f64) -> Self {
        let seconds = result.elapsed.as_secs_f64();
        let mb_s = result.payload_bytes_appended as f64 / seconds / 1e6;
        CaseRound {
            mb_s,
            stored_mb_s: result.record_bytes_appended as f64 / seconds / 1e6,
            records_per_s: result.records as f64 / seconds,
            ratio_to_raw: mb_s / raw_write_mb_s,
        }
    }
}

/// One engine case over every round so far.
#[derive(Debug)]
pub struct CaseRounds {
    case: EngineCase,
    rounds: Vec<CaseRound>,
    latency_us: Histogram<u64>,
}

impl CaseRounds {
    /// No rounds yet.
    pub fn new(case: EngineCase) -> Result<Self, PerfError> {
        Ok(CaseRounds {
            case,
            rounds: Vec::new(),
            latency_us: new_latency_histogram()?,
        })
    }

    /// The case measured.
    pub fn case(&self) -> EngineCase {
        self.case
    }

    /// Adds one round: its speeds and its per-append latencies.
    pub fn push(&mut self, round: CaseRound, latency_us: &Histogram<u64>) -> Result<(), PerfError> {
        self.latency_us.add(latency_us).map_err(histogram_error)?;
        self.rounds.push(round);
        Ok(())
    }

    /// Medians over the rounds, the ratios' range, and percentiles of all rounds' appends.
    pub fn to_report(&self) -> CaseReport {
        let over_rounds =
            |field: fn(&CaseRound) -> f64| -> Vec<f64> { self.rounds.iter().map(field).collect() };
        let ratios = over_rounds(|round| round.ratio_to_raw);
        let percentile = |quantile| self.latency_us.value_at_quantile(quantile) as f64;
        CaseReport {
            record_bytes: self.case.body_bytes,
            flush: self.case.flush_name(),
            mb_s: median(&over_rounds(|round| round.mb_s)),
            records_per_s: median(&over_rounds(|round| round.records_per_s)),
            ratio_to_raw: median(&ratios),
            latency_us_p50: percentile(0.5),
            latency_us_p99: percentile(0.99),
            latency_us_p999: percentile(0.999),
            stored_mb_s: median(&over_rounds(|round| round.stored_mb_s)),
            ratio_to_raw_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_to_raw_max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use spillway_storage::FlushMode;

    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[2.0, 1.0]), 1.5);
        assert!(median(&[]).is_nan());
    }

    fn result(payload_bytes: u64, seconds: u64, latencies_us: &[u64]) -> EngineResult {
        let mut latency_us = new_latency_histogram().unwrap();
        for &latency in latencies_us {
            latency_us.record(latency).unwrap();
        }
        EngineResult {
            payload_bytes_appended: payload_bytes,
            record_bytes_appended: payload_bytes * 2,
            records: payload_bytes / 100,
            elapsed: Duration::from_secs(seconds),
            latency_us,
        }
    }

    #[test]
    fn a_round_is_payload_per_second_against_its_own_raw_speed() {
        let round = CaseRound::new(&result(2_000_000_000, 2, &[]), 2000.0);
        assert_eq!(round.mb_s, 1000.0);
        assert_eq!(round.stored_mb_s, 2000.0);
        assert_eq!(round.records_per_s, 10_000_000.0);
        assert_eq!(round.ratio_to_raw, 0.5);
    }

    #[test]
    fn rounds_combine_into_medians_paired_ratios_and_merged_latencies() {
        let case = EngineCase {
            body_bytes: 100,
            flush: FlushMode::Async,
        };
        let mut rounds = CaseRounds::new(case).unwrap();
        // Raw speeds 1000, 2000, 1500 MB/s; payload speeds 800, 1000, 1200 MB/s.
        for (payload_bytes, raw_write_mb_s, latency_us) in [
            (800_000_000, 1000.0, 10),
            (1_000_000_000, 2000.0, 20),
            (1_200_000_000, 1500.0, 1000),
        ] {
            let result = result(payload_bytes, 1, &[latency_us; 10]);
            rounds
                .push(CaseRound::new(&result, raw_write_mb_s), &result.latency_us)
                .unwrap();
        }
        let report = rounds.to_report();
        assert_eq!(report.record_bytes, 100);
        assert_eq!(report.flush, "async");
        assert_eq!(report.mb_s, 1000.0);
        assert_eq!(report.stored_mb_s, 2000.0);
        assert_eq!(report.records_per_s, 10_000_000.0);
        // Per-round ratios 0.8, 0.5, 0.8: the median pairs rounds, unlike 1000 / 1500.
        assert_eq!(report.ratio_to_raw, 0.8);
        assert_eq!(report.ratio_to_raw_min, 0.5);
        assert_eq!(report.ratio_to_raw_max, 0.8);
        assert_eq!(report.latency_us_p50, 20.0);
        assert!(report.latency_us_p999 >= 999.0, "{report:?}");
    }
}
