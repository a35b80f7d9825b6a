//! How long a shard takes to answer produce requests: from the moment it has decoded one
//! to the moment its answer is queued for the socket — validation, the copy into the log,
//! and the wait until the records are durable in the configured flush mode. Each shard
//! logs the last interval's percentiles at info level (`produce requests answered`), so an
//! operator, or a benchmark, can tell time spent in the broker from time spent getting to
//! it and back (client threads, sockets, a busy machine's scheduler).
//!
//! Recording costs one histogram increment per request (not per message). The histogram
//! is per shard, on its executor: no lock, no sharing.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::shard::Shard;

/// How often each shard logs its produce timings (nothing is logged for an interval
/// without produce requests).
pub const STATS_INTERVAL: Duration = Duration::from_secs(10);
/// Longest time the histogram tells apart; longer ones count as this.
const HIGHEST_TRACKED_US: u64 = 60_000_000;

/// A shard's produce timings since the last report.
pub struct RequestStats {
    produce: RefCell<Histogram<u64>>,
}

/// Produce timings over one interval, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProduceReport {
    /// Requests answered.
    pub requests: u64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Longest.
    pub max_us: u64,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats {
            produce: RefCell::new(
                Histogram::new_with_bounds(1, HIGHEST_TRACKED_US, 2)
                    .expect("valid histogram bounds"),
            ),
        }
    }
}

impl RequestStats {
    /// Counts one produce request answered after `elapsed`.
    pub fn record_produce(&self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, HIGHEST_TRACKED_US);
        self.produce.borrow_mut().saturating_record(micros);
    }

    /// The timings since the last call (`None` if no request was answered), starting over.
    pub fn take_produce(&self) -> Option<ProduceReport> {
        let mut histogram = self.produce.borrow_mut();
        if histogram.is_empty() {
            return None;
        }
        let report = ProduceReport {
            requests: histogram.len(),
            p50_us: histogram.value_at_quantile(0.5),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        };
        histogram.reset();
        Some(report)
    }
}

/// Logs the shard's produce timings every [`STATS_INTERVAL`] until the task is dropped.
pub async fn log_periodically(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(STATS_INTERVAL).await;
        if let Some(report) = shard.stats.take_produce() {
            tracing::info!(
                shard = shard.id.0,
                requests = report.requests,
                per_second = report.requests / STATS_INTERVAL.as_secs().max(1),
                p50_us = report.p50_us,
                p99_us = report.p99_us,
                p999_us = report.p999_us,
                max_us = report.max_us,
                "produce requests answered (decoded to answer queued)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_gives_the_intervals_percentiles_and_starts_over() {
        let stats = RequestStats::default();
        assert_eq!(stats.take_produce(), None);
        for millis in 1..=1000 {
            stats.record_produce(Duration::from_micros(millis * 1000));
        }
        let report = stats.take_produce().unwrap();
        assert_eq!(report.requests, 1000);
        // Two significant digits: within 1%.
        let near = |value: u64, expected: u64| value.abs_diff(expected) * 100 <= expected;
        assert!(near(report.p50_us, 500_000), "{report:?}");
        assert!(near(report.p99_us, 990_000), "{report:?}");
        assert!(near(report.p999_us, 999_000), "{report:?}");
        assert!(near(report.max_us, 1_000_000), "{report:?}");
        assert_eq!(stats.take_produce(), None, "started over");
        // Beyond the tracked range counts as its top, below a microsecond as one.
        stats.record_produce(Duration::from_secs(3600));
        stats.record_produce(Duration::ZERO);
        let report = stats.take_produce().unwrap();
        assert_eq!(report.requests, 2);
        assert!(near(report.max_us, HIGHEST_TRACKED_US), "{report:?}");
    }
}
