//! [`RateLimiter`]: holds one worker to a message rate (`--rate`), as a token bucket.
//!
//! Tokens (messages) accrue at the rate, up to a burst of [`BURST_SECONDS`] worth (at least
//! one message), and the bucket starts full. Taking `n` tokens never refuses: the bucket
//! may go into debt, and the caller sleeps until the debt would be paid back. So a batch
//! larger than the burst is allowed and simply waits longer, a late wake-up is not lost
//! (the next call sees the extra time), and an idle worker cannot save up more than one
//! burst. A run-wide rate is split among workers by the caller (`rate / workers` each).
//!
//! The clock is injected ([`Clock`]) so the arithmetic is tested without sleeping.

use std::time::{Duration, Instant};

/// The largest burst the bucket holds, in seconds of the rate.
pub const BURST_SECONDS: f64 = 0.01;

/// Where a [`RateLimiter`] reads the time and sleeps.
pub trait Clock {
    /// Time since an arbitrary fixed origin; never decreases.
    fn now(&mut self) -> Duration;
    /// Waits for `duration`.
    fn sleep(&mut self, duration: Duration);
}

/// The real monotonic clock and `std::thread::sleep`.
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for MonotonicClock {
    fn now(&mut self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// A token bucket of messages; unlimited when built with `None`.
#[derive(Clone, Debug)]
pub struct RateLimiter<C: Clock = MonotonicClock> {
    /// Messages per second, or `None` for no limit.
    messages_per_second: Option<f64>,
    /// Most tokens the bucket holds.
    burst: f64,
    /// Tokens in the bucket as of `updated`; negative is debt.
    tokens: f64,
    updated: Duration,
    clock: C,
}

impl RateLimiter<MonotonicClock> {
    /// A limiter of `messages_per_second` (`None`: unlimited) on the real clock.
    /// Panics on a rate that is not a positive finite number (the command line refuses it).
    pub fn new(messages_per_second: Option<f64>) -> RateLimiter<MonotonicClock> {
        RateLimiter::with_clock(messages_per_second, MonotonicClock::default())
    }
}

impl<C: Clock> RateLimiter<C> {
    /// A limiter on the given clock.
    pub fn with_clock(messages_per_second: Option<f64>, mut clock: C) -> RateLimiter<C> {
        if let Some(rate) = messages_per_second {
            assert!(
                rate.is_finite() && rate > 0.0,
                "a rate limit must be a positive number of messages per second, not {rate}"
            );
        }
        let burst = messages_per_second.map_or(0.0, |rate| (rate * BURST_SECONDS).max(1.0));
        let updated = clock.now();
        RateLimiter {
            messages_per_second,
            burst,
            tokens: burst,
            updated,
            clock,
        }
    }

    /// The rate, `None` if unlimited.
    pub fn messages_per_second(&self) -> Option<f64> {
        self.messages_per_second
    }

    /// Takes `n` messages' worth of tokens, sleeping as long as the rate requires. Returns
    /// at once when unlimited.
    pub fn wait_for(&mut self, n: u64) {
        let Some(rate) = self.messages_per_second else {
            return;
        };
        let now = self.clock.now();
        let accrued = now.saturating_sub(self.updated).as_secs_f64() * rate;
        self.updated = now;
        self.tokens = (self.tokens + accrued).min(self.burst) - n as f64;
        if self.tokens < 0.0 {
            // The time accrual would take to pay the debt back; the next call counts the
            // time actually slept.
            self.clock
                .sleep(Duration::from_secs_f64(-self.tokens / rate));
        }
    }

    /// The clock (for tests).
    pub fn clock(&self) -> &C {
        &self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Time that moves only when someone sleeps (or the test advances it).
    #[derive(Debug, Default)]
    struct FakeClock {
        now: Duration,
        slept: Duration,
        sleeps: u32,
    }

    impl Clock for FakeClock {
        fn now(&mut self) -> Duration {
            self.now
        }

        fn sleep(&mut self, duration: Duration) {
            self.now += duration;
            self.slept += duration;
            self.sleeps += 1;
        }
    }

    fn close(actual: Duration, expected_s: f64) -> bool {
        (actual.as_secs_f64() - expected_s).abs() < 1e-6
    }

    #[test]
    fn unlimited_never_sleeps() {
        let mut limiter = RateLimiter::with_clock(None, FakeClock::default());
        for _ in 0..1_000 {
            limiter.wait_for(1_000);
        }
        assert_eq!(limiter.clock().sleeps, 0);
        assert_eq!(limiter.messages_per_second(), None);
    }

    #[test]
    fn steady_sending_takes_count_over_rate_less_the_initial_burst() {
        // 1000 msg/s: the burst is 10 messages, so 1000 messages take 0.99 s.
        let mut limiter = RateLimiter::with_clock(Some(1_000.0), FakeClock::default());
        for _ in 0..1_000 {
            limiter.wait_for(1);
        }
        assert!(close(limiter.clock().now, 0.990), "{:?}", limiter.clock());
        assert_eq!(
            limiter.clock().sleeps,
            990,
            "one sleep per message past the burst"
        );
    }

    #[test]
    fn a_batch_larger_than_the_burst_waits_in_proportion() {
        let mut limiter = RateLimiter::with_clock(Some(1_000.0), FakeClock::default());
        limiter.wait_for(5_000);
        assert!(close(limiter.clock().slept, 4.990), "{:?}", limiter.clock());
        // The debt is paid: the next message costs one token's time, no more.
        limiter.wait_for(1);
        assert!(close(limiter.clock().slept, 4.991), "{:?}", limiter.clock());
    }

    #[test]
    fn idle_time_saves_up_one_burst_only() {
        let mut limiter = RateLimiter::with_clock(Some(100_000.0), FakeClock::default());
        limiter.wait_for(1_000); // the burst (1000 = 10 ms worth): no sleep
        assert_eq!(limiter.clock().sleeps, 0);
        limiter.clock.now += Duration::from_secs(10);
        limiter.wait_for(1_000);
        assert_eq!(limiter.clock().sleeps, 0, "a full burst after idling");
        limiter.wait_for(1);
        assert!(
            close(limiter.clock().slept, 0.000_01),
            "ten seconds of idling did not buy a million messages: {:?}",
            limiter.clock()
        );
    }

    #[test]
    fn oversleeping_is_credited_to_the_next_call() {
        let mut limiter = RateLimiter::with_clock(Some(10.0), FakeClock::default());
        limiter.wait_for(1); // burst of 1 at 10 msg/s
        limiter.wait_for(1); // debt of 1: sleeps 0.1 s
        assert!(close(limiter.clock().slept, 0.1));
        limiter.clock.now += Duration::from_millis(50); // woke up 50 ms late
        limiter.wait_for(1);
        assert!(
            close(limiter.clock().slept, 0.15),
            "only the remaining 50 ms: {:?}",
            limiter.clock()
        );
    }

    #[test]
    fn low_rates_still_allow_one_message_at_a_time() {
        let mut limiter = RateLimiter::with_clock(Some(0.5), FakeClock::default());
        limiter.wait_for(1);
        assert_eq!(limiter.clock().sleeps, 0);
        limiter.wait_for(1);
        assert!(close(limiter.clock().slept, 2.0));
    }

    #[test]
    #[should_panic(expected = "positive number")]
    fn a_zero_rate_is_refused() {
        RateLimiter::new(Some(0.0));
    }
}
