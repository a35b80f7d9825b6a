//! `Signal`: a single-threaded "something changed" notification for tasks of one executor.
//!
//! A task checks its condition, and if it does not hold, awaits `changed()`; whoever changes
//! the state calls `notify()`. No lost wake-ups: the generation is captured when `changed()` is
//! called, and nothing can run between the check and the capture on a single thread.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiting task when notified.
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Wakes all tasks waiting in `changed()`.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves at the next `notify()`.
    pub fn changed(&self) -> Changed<'_> {
        self.changed_since(self.generation.get())
    }

    /// The number of `notify()` calls so far.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Resolves once the generation differs from `seen` (at once if it already does), so a
    /// notify between reading [`Signal::generation`] and waiting is never lost.
    pub fn changed_since(&self, seen: u64) -> Changed<'_> {
        Changed {
            signal: self,
            generation: seen,
        }
    }
}

/// Future returned by [`Signal::changed`].
pub struct Changed<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        // A task polled again keeps one waker, not one per poll.
        if !wakers.iter().any(|waker| waker.will_wake(context.waker())) {
            wakers.push(context.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;

    fn poll(future: Pin<&mut Changed<'_>>) -> Poll<()> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn no_notify_is_lost_and_a_task_keeps_one_waker() {
        let signal = Signal::default();
        let seen = signal.generation();
        signal.notify();
        // Notified before anyone waited: a waiter that saw the old generation returns.
        assert!(poll(pin!(signal.changed_since(seen))).is_ready());
        let mut waiting = pin!(signal.changed());
        assert!(poll(waiting.as_mut()).is_pending());
        assert!(poll(waiting.as_mut()).is_pending());
        assert_eq!(signal.wakers.borrow().len(), 1);
        signal.notify();
        assert!(poll(waiting.as_mut()).is_ready());
        assert!(signal.wakers.borrow().is_empty());
    }
}
