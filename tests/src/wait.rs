//! Waiting for something another process does, with a deadline.
//!
//! A test never sleeps to let something happen. When the only way to learn about a change
//! is to ask again (a name server's routes, a child's exit), it asks in a loop with a short
//! pause and fails once the deadline has passed; otherwise it blocks on the event itself
//! (a response on a socket, a line on a pipe) with a timeout.

use std::time::{Duration, Instant};

/// Longest any single wait in these tests may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Pause between two attempts of [`poll_until`]: short next to every deadline, long enough
/// not to spin.
pub const POLL_PAUSE: Duration = Duration::from_millis(20);

/// Calls `attempt` until it gives a value, pausing [`POLL_PAUSE`] between attempts; panics
/// naming `what` once `deadline` has passed.
pub fn poll_until<T>(what: &str, deadline: Duration, attempt: impl FnMut() -> Option<T>) -> T {
    poll_within(deadline, attempt)
        .unwrap_or_else(|| panic!("{what} did not happen within {deadline:?}"))
}

/// Calls `attempt` until it gives a value or `deadline` has passed (`None`), pausing
/// [`POLL_PAUSE`] between attempts. The one place these tests pause.
pub fn poll_within<T>(deadline: Duration, mut attempt: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    loop {
        if let Some(value) = attempt() {
            return Some(value);
        }
        if started.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

/// Runs `check` every [`POLL_PAUSE`] for `duration`: for claims that something *stays*
/// true (a heartbeating broker keeps its route), which only time can show.
pub fn keep_checking(duration: Duration, mut check: impl FnMut()) {
    let none: Option<()> = poll_within(duration, || {
        check();
        None
    });
    debug_assert!(none.is_none());
}
