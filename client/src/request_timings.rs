//! [`RequestTimings`]: where a producer's requests spend their time, per stage, so that a
//! latency tail can be placed without guessing.
//!
//! A message's acknowledgement waits for three things one after another, each measured
//! per produce request (not per message) by the sender thread:
//!
//! * **batch wait**: from the first message of the request's oldest batch to the request's
//!   write: the linger, a batch filling up, or (with `send_when_idle`) the request to the
//!   same broker shard in flight before it;
//! * **round trip**: from the write to the answer reaching the connection's reader thread
//!   (the broker's work, the two socket hops, and the reader thread's wake-up);
//! * **answer hand-off**: from that arrival to the sender thread settling the answer (one
//!   thread hand-off: the reader posts it on the sender's event channel).
//!
//! Each is an HDR histogram in microseconds, with two significant figures (a few KiB each).
//! They are cumulative since the producer started; take one snapshot and
//! [`RequestTimings::subtract`] it from a later one to cover a window.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest stage time recorded exactly; longer ones count as this.
pub const HIGHEST_STAGE_US: u64 = 60_000_000;

/// Where a producer's requests spent their time (see the module docs).
#[derive(Clone, Debug)]
pub struct RequestTimings {
    /// First message of the oldest batch → request written, in microseconds.
    pub batch_wait_us: Histogram<u64>,
    /// Request written → answer read by the connection's reader thread, in microseconds.
    pub round_trip_us: Histogram<u64>,
    /// Answer read → answer settled by the sender thread, in microseconds.
    pub answer_handoff_us: Histogram<u64>,
}

impl Default for RequestTimings {
    fn default() -> Self {
        let histogram =
            || Histogram::new_with_bounds(1, HIGHEST_STAGE_US, 2).expect("static bounds are valid");
        RequestTimings {
            batch_wait_us: histogram(),
            round_trip_us: histogram(),
            answer_handoff_us: histogram(),
        }
    }
}

/// The instants one request passed through.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestStamps {
    pub(crate) oldest_batch_opened: Instant,
    pub(crate) written: Instant,
    pub(crate) answer_read: Instant,
    pub(crate) settled: Instant,
}

impl RequestTimings {
    /// Records one request's stages.
    pub(crate) fn record(&mut self, stamps: RequestStamps) {
        let micros = |from: Instant, to: Instant| {
            let micros = to.saturating_duration_since(from).as_micros();
            u64::try_from(micros)
                .unwrap_or(u64::MAX)
                .min(HIGHEST_STAGE_US)
        };
        // In bounds by the `min` above, so recording cannot fail.
        let _ = self
            .batch_wait_us
            .record(micros(stamps.oldest_batch_opened, stamps.written));
        let _ = self
            .round_trip_us
            .record(micros(stamps.written, stamps.answer_read));
        let _ = self
            .answer_handoff_us
            .record(micros(stamps.answer_read, stamps.settled));
    }

    /// Requests recorded.
    pub fn requests(&self) -> u64 {
        self.round_trip_us.len()
    }

    /// Adds `other`'s requests (merging producers).
    pub fn add(&mut self, other: &RequestTimings) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.batch_wait_us.add(&other.batch_wait_us);
        let _ = self.round_trip_us.add(&other.round_trip_us);
        let _ = self.answer_handoff_us.add(&other.answer_handoff_us);
    }

    /// Takes out an earlier snapshot's requests, leaving those recorded since.
    pub fn subtract(&mut self, earlier: &RequestTimings) {
        // An earlier snapshot of the same histograms holds no more in any bucket.
        let _ = self.batch_wait_us.subtract(&earlier.batch_wait_us);
        let _ = self.round_trip_us.subtract(&earlier.round_trip_us);
        let _ = self.answer_handoff_us.subtract(&earlier.answer_handoff_us);
    }

    /// `p50 … p99 … p99.9 …` of one stage, for people.
    pub fn describe(histogram: &Histogram<u64>) -> String {
        let at = |quantile| format_us(histogram.value_at_quantile(quantile));
        format!("p50 {}  p99 {}  p99.9 {}", at(0.5), at(0.99), at(0.999))
    }
}

fn format_us(micros: u64) -> String {
    let duration = Duration::from_micros(micros);
    if micros < 1_000 {
        format!("{micros} µs")
    } else {
        format!("{:.2} ms", duration.as_secs_f64() * 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(base: Instant, written_us: u64, read_us: u64, settled_us: u64) -> RequestStamps {
        let at = |us| base + Duration::from_micros(us);
        RequestStamps {
            oldest_batch_opened: base,
            written: at(written_us),
            answer_read: at(read_us),
            settled: at(settled_us),
        }
    }

    #[test]
    fn each_stage_is_the_gap_between_its_instants() {
        let base = Instant::now();
        let mut timings = RequestTimings::default();
        timings.record(stamps(base, 300, 1_300, 1_350));
        assert_eq!(timings.requests(), 1);
        // Two significant figures: values are kept to within their bucket.
        let holds =
            |histogram: &Histogram<u64>, micros| histogram.equivalent(histogram.max(), micros);
        assert!(holds(&timings.batch_wait_us, 300));
        assert!(holds(&timings.round_trip_us, 1_000));
        assert!(holds(&timings.answer_handoff_us, 50));
        assert!(
            !holds(&timings.round_trip_us, 1_300),
            "the round trip starts at the write"
        );
    }

    #[test]
    fn a_later_snapshot_minus_an_earlier_one_covers_the_window() {
        let base = Instant::now();
        let mut timings = RequestTimings::default();
        timings.record(stamps(base, 10, 20, 30));
        let earlier = timings.clone();
        timings.record(stamps(base, 5_000, 6_000, 6_010));
        let mut window = timings.clone();
        window.subtract(&earlier);
        assert_eq!(window.requests(), 1);
        assert!(window.batch_wait_us.min() >= 4_900);
        let mut merged = earlier.clone();
        merged.add(&window);
        assert_eq!(merged.requests(), 2);
    }

    #[test]
    fn stages_beyond_the_bound_count_as_the_bound() {
        let base = Instant::now();
        let mut timings = RequestTimings::default();
        timings.record(stamps(base, 90_000_000, 90_000_001, 90_000_002));
        assert!(timings
            .batch_wait_us
            .equivalent(timings.batch_wait_us.max(), HIGHEST_STAGE_US));
    }
}
