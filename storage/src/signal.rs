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
pub(crate) struct Signal {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Wakes all tasks waiting in `changed()`.
    pub(crate) fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Resolves at the next `notify()`.
    pub(crate) fn changed(&self) -> Changed<'_> {
        Changed {
            signal: self,
            generation: self.generation.get(),
        }
    }
}

/// Future returned by [`Signal::changed`].
pub(crate) struct Changed<'a> {
    signal: &'a Signal,
    generation: u64,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            return Poll::Ready(());
        }
        self.signal
            .wakers
            .borrow_mut()
            .push(context.waker().clone());
        Poll::Pending
    }
}
