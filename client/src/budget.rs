//! [`Budget`]: a counting limit that callers can wait on as a future, under any runtime or
//! none (`futures_lite::future::block_on` for a blocking wait). It bounds a producer's
//! unacknowledged bytes and a connection's requests in flight.
//!
//! Taking from the budget is one atomic add when there is room, so the hot path of a send
//! costs no lock. Only a caller that finds the budget exhausted takes the lock, registers a
//! one-shot flume channel and waits on it (`recv_async`); whoever gives back
//! wakes every waiter, and each tries again. The lost-wakeup race is closed by ordering:
//! a waiter raises `waiting` before its last try, a releaser gives back before it looks at
//! `waiting` (both sequentially consistent), so either the last try sees the room or the
//! releaser sees the waiter.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A limit on a count (bytes, requests) shared by threads and tasks.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: usize,
    used: AtomicUsize,
    waiting: AtomicBool,
    waiters: Mutex<Vec<flume::Sender<()>>>,
}

impl Budget {
    /// A budget of `limit` units, all free.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            limit,
            used: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Units taken now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `amount` if that keeps the total within the limit. An amount larger than the
    /// whole limit is granted when nothing else is taken, so it cannot wait forever.
    pub(crate) fn try_acquire(&self, amount: usize) -> bool {
        let before = self.used.fetch_add(amount, Ordering::SeqCst);
        if before + amount <= self.limit || before == 0 {
            return true;
        }
        self.used.fetch_sub(amount, Ordering::SeqCst);
        false
    }

    /// Takes `amount`, waiting (as a future) until there is room.
    pub(crate) async fn acquire_async(&self, amount: usize) {
        while !self.try_acquire(amount) {
            let Some(wake) = self.register(amount) else {
                return;
            };
            let _ = wake.recv_async().await;
        }
    }

    /// Gives back `amount` and wakes the waiters, if any.
    pub(crate) fn release(&self, amount: usize) {
        let before = self.used.fetch_sub(amount, Ordering::SeqCst);
        assert!(
            before >= amount,
            "released {amount} of a budget holding {before}"
        );
        if self.waiting.load(Ordering::SeqCst) {
            let waiters = {
                let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
                self.waiting.store(false, Ordering::SeqCst);
                std::mem::take(&mut *waiters)
            };
            for waiter in waiters {
                let _ = waiter.send(());
            }
        }
    }

    /// Registers a waiter; returns `None` if the last try (after raising `waiting`)
    /// succeeded, so the caller holds `amount` and need not wait.
    fn register(&self, amount: usize) -> Option<flume::Receiver<()>> {
        let (wake_sender, wake) = flume::bounded(1);
        {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            self.waiting.store(true, Ordering::SeqCst);
            waiters.push(wake_sender);
        }
        if self.try_acquire(amount) {
            // Our sender stays in the list and is woken harmlessly by a later release.
            return None;
        }
        Some(wake)
    }
}

/// Units of a shared [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    budget: Arc<Budget>,
    amount: usize,
}

impl Permit {
    /// Takes `amount` of `budget` if there is room now.
    pub(crate) fn try_take(budget: &Arc<Budget>, amount: usize) -> Option<Permit> {
        budget.try_acquire(amount).then(|| Permit {
            budget: budget.clone(),
            amount,
        })
    }

    /// Takes `amount` of `budget`, waiting as a future.
    pub(crate) async fn take(budget: &Arc<Budget>, amount: usize) -> Permit {
        budget.acquire_async(amount).await;
        Permit {
            budget: budget.clone(),
            amount,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.release(self.amount);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn acquire_within_the_limit_and_refuse_beyond() {
        let budget = Budget::new(10);
        assert!(budget.try_acquire(6));
        assert!(!budget.try_acquire(5));
        assert!(budget.try_acquire(4));
        budget.release(10);
        assert_eq!(budget.used(), 0);
        // Larger than the limit: granted only when the budget is empty.
        assert!(budget.try_acquire(25));
        assert!(!budget.try_acquire(1));
        budget.release(25);
    }

    #[test]
    fn waiting_futures_resume_when_units_come_back() {
        let budget = Arc::new(Budget::new(4));
        assert!(budget.try_acquire(4));
        let (done_sender, done) = flume::unbounded();
        let waiters: Vec<_> = (0..2)
            .map(|waiter| {
                let budget = budget.clone();
                let done_sender = done_sender.clone();
                std::thread::spawn(move || {
                    futures_lite::future::block_on(budget.acquire_async(2));
                    done_sender.send(waiter).unwrap();
                })
            })
            .collect();
        // Neither can go on while the budget is full.
        assert!(done.recv_timeout(Duration::from_millis(50)).is_err());
        budget.release(4);
        let mut finished = vec![
            done.recv_timeout(Duration::from_secs(10)).unwrap(),
            done.recv_timeout(Duration::from_secs(10)).unwrap(),
        ];
        finished.sort();
        assert_eq!(finished, [0, 1]);
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert_eq!(budget.used(), 4);
    }

    #[test]
    fn permits_give_back_on_drop() {
        let budget = Arc::new(Budget::new(1));
        let permit = Permit::try_take(&budget, 1).unwrap();
        assert!(Permit::try_take(&budget, 1).is_none());
        drop(permit);
        assert!(Permit::try_take(&budget, 1).is_some());
    }
}
