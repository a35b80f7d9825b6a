//! [`LongPoll`]: pulls waiting for a queue's next message, woken by the append that brings
//! it.
//!
//! A pull that finds nothing at its offset subscribes to its queue and waits (up to its max
//! wait); the shard that owns the queue calls [`LongPoll::notify`] once an append to the
//! queue is readable (durable per the flush mode). Both run on the queue's owner shard, so
//! this is a plain single-threaded map of [`Signal`]s: no lock, no lost wake-up (the puller
//! captures the signal's generation before it reads, and nothing else runs between a read
//! finding nothing and the wait starting).
//!
//! Entries exist only while someone waits: `notify` removes the queue's entry, and a
//! waiter that gives up removes it when it was the last one ([`LongPoll::release`]), so an
//! idle queue costs nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use spillway_storage::signal::Signal;

/// Each waited-on queue's signal, by topic then queue id.
type Waiting = HashMap<Rc<str>, HashMap<u32, Rc<Signal>>>;

/// Per-queue wake-ups for waiting pulls, on one shard.
#[derive(Default)]
pub struct LongPoll {
    waiting: RefCell<Waiting>,
}

impl LongPoll {
    /// The signal the queue's next append notifies; capture `changed()` on it *before*
    /// reading, then await it if the read found nothing.
    pub fn subscribe(&self, topic: &str, queue: u32) -> Rc<Signal> {
        let mut waiting = self.waiting.borrow_mut();
        let by_queue = match waiting.get_mut(topic) {
            Some(by_queue) => by_queue,
            None => waiting.entry(Rc::from(topic)).or_default(),
        };
        by_queue.entry(queue).or_default().clone()
    }

    /// Wakes every pull waiting on the queue.
    pub fn notify(&self, topic: &str, queue: u32) {
        let signal = {
            let mut waiting = self.waiting.borrow_mut();
            let Some(by_queue) = waiting.get_mut(topic) else {
                return;
            };
            let signal = by_queue.remove(&queue);
            if by_queue.is_empty() {
                waiting.remove(topic);
            }
            signal
        };
        if let Some(signal) = signal {
            signal.notify();
        }
    }

    /// A waiter is done with `signal`: forget the queue's entry if nobody else holds it.
    pub fn release(&self, topic: &str, queue: u32, signal: Rc<Signal>) {
        let mut waiting = self.waiting.borrow_mut();
        let Some(by_queue) = waiting.get_mut(topic) else {
            return;
        };
        let last = by_queue
            .get(&queue)
            .is_some_and(|held| Rc::ptr_eq(held, &signal) && Rc::strong_count(held) == 2);
        drop(signal);
        if last {
            by_queue.remove(&queue);
            if by_queue.is_empty() {
                waiting.remove(topic);
            }
        }
    }

    /// Wakes every waiting pull (shutdown: they answer with what they have).
    pub fn notify_all(&self) {
        let waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        for signal in waiting.into_values().flat_map(HashMap::into_values) {
            signal.notify();
        }
    }

    /// Queues with a waiter.
    pub fn waiting_queues(&self) -> usize {
        self.waiting.borrow().values().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn is_ready(future: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        let mut context = Context::from_waker(Waker::noop());
        matches!(future.poll(&mut context), Poll::Ready(()))
    }

    #[test]
    fn an_append_wakes_the_queue_waiters_only() {
        let long_poll = LongPoll::default();
        let orders_0 = long_poll.subscribe("orders", 0);
        let orders_1 = long_poll.subscribe("orders", 1);
        let mut woken = pin!(orders_0.changed());
        let mut other = pin!(orders_1.changed());
        assert!(!is_ready(woken.as_mut()));
        long_poll.notify("orders", 0);
        assert!(is_ready(woken.as_mut()));
        assert!(!is_ready(other.as_mut()));
        assert_eq!(long_poll.waiting_queues(), 1);
    }

    #[test]
    fn the_last_waiter_leaving_forgets_the_queue() {
        let long_poll = LongPoll::default();
        let first = long_poll.subscribe("t", 3);
        let second = long_poll.subscribe("t", 3);
        assert!(Rc::ptr_eq(&first, &second));
        long_poll.release("t", 3, first);
        assert_eq!(long_poll.waiting_queues(), 1);
        long_poll.release("t", 3, second);
        assert_eq!(long_poll.waiting_queues(), 0);
    }

    #[test]
    fn notify_all_wakes_everyone() {
        let long_poll = LongPoll::default();
        let a = long_poll.subscribe("a", 0);
        let b = long_poll.subscribe("b", 9);
        let mut a_changed = pin!(a.changed());
        let mut b_changed = pin!(b.changed());
        long_poll.notify_all();
        assert!(is_ready(a_changed.as_mut()));
        assert!(is_ready(b_changed.as_mut()));
        assert_eq!(long_poll.waiting_queues(), 0);
    }
}
