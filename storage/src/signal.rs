//! `Signal`: a single-threaded "something changed" notification for tasks of one executor.
//!
//! A task checks its condition, and if it does not hold, awaits `changed()`; whoever changes
//! the state calls `notify()`. No lost wake-ups: the generation is captured when `changed()` is
//! called, and nothing can run between the check and the capture on a single thread.
//!
//! A waiting [`Changed`] holds one slot in its signal, and gives it back when dropped. That
//! matters for signals that are rarely notified but often waited on in a race with
//! something else (a shard's shutdown, raced by every long-polling pull): without it each
//! finished wait left its waker behind, and the list grew by one per pull until shutdown,
//! with every poll scanning all of it.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Wakes every waiting task when notified.
#[derive(Default)]
pub struct Signal {
    generation: Cell<u64>,
    wakers: RefCell<Wakers>,
}

/// The wakers of the current generation's waiters, in reusable slots.
#[derive(Default)]
struct Wakers {
    slots: Vec<Option<Waker>>,
    /// Empty slots of `slots`.
    free: Vec<usize>,
}

impl Wakers {
    fn insert(&mut self, waker: Waker) -> usize {
        match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(waker);
                slot
            }
            None => {
                self.slots.push(Some(waker));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, slot: usize) {
        if self.slots[slot].take().is_some() {
            self.free.push(slot);
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl Signal {
    /// Wakes all tasks waiting in `changed()`.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        let mut taken = {
            let mut wakers = self.wakers.borrow_mut();
            wakers.free.clear();
            std::mem::take(&mut wakers.slots)
        };
        for waker in taken.drain(..).flatten() {
            waker.wake();
        }
        // Keep the allocation for the next generation's waiters.
        let mut wakers = self.wakers.borrow_mut();
        if wakers.slots.is_empty() {
            wakers.slots = taken;
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
            slot: None,
        }
    }
}

/// Future returned by [`Signal::changed`].
pub struct Changed<'a> {
    signal: &'a Signal,
    generation: u64,
    /// Its waker's slot in the signal, while registered. Valid only while the signal is
    /// still at `generation`: a notify empties every slot.
    slot: Option<usize>,
}

impl Future for Changed<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.signal.generation.get() != self.generation {
            self.slot = None;
            return Poll::Ready(());
        }
        let signal = self.signal;
        let mut wakers = signal.wakers.borrow_mut();
        match self.slot {
            // Polled again: one slot per waiter, refreshed if the task's waker changed.
            Some(slot) => {
                if let Some(waker) = &mut wakers.slots[slot] {
                    if !waker.will_wake(context.waker()) {
                        waker.clone_from(context.waker());
                    }
                }
            }
            None => self.slot = Some(wakers.insert(context.waker().clone())),
        }
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            if self.signal.generation.get() == self.generation {
                self.signal.wakers.borrow_mut().remove(slot);
            }
        }
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
        assert_eq!(signal.wakers.borrow().waiting(), 1);
        signal.notify();
        assert!(poll(waiting.as_mut()).is_ready());
        assert_eq!(signal.wakers.borrow().waiting(), 0);
    }

    #[test]
    fn an_abandoned_wait_gives_its_slot_back() {
        let signal = Signal::default();
        // Like a pull racing shutdown: many waits that end some other way.
        for _ in 0..1000 {
            let mut waiting = pin!(signal.changed());
            assert!(poll(waiting.as_mut()).is_pending());
        }
        assert_eq!(signal.wakers.borrow().waiting(), 0);
        assert!(signal.wakers.borrow().slots.len() <= 1);
        // Slots are reused, and a notify still reaches the waiters that remain.
        let mut first = Box::pin(signal.changed());
        let mut second = Box::pin(signal.changed());
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        drop(first);
        assert_eq!(signal.wakers.borrow().waiting(), 1);
        signal.notify();
        assert!(poll(second.as_mut()).is_ready());
        // A wait registered before a notify and dropped after it touches nothing of the
        // next generation's.
        let mut stale = Box::pin(signal.changed());
        assert!(poll(stale.as_mut()).is_pending());
        signal.notify();
        let mut fresh = Box::pin(signal.changed());
        assert!(poll(fresh.as_mut()).is_pending());
        drop(stale);
        assert_eq!(signal.wakers.borrow().waiting(), 1);
    }
}
