//! [`ProcessQueue`]: the state of one queue a push consumer owns, shared by the queue's
//! pull thread, the consume threads and the rebalance thread: the messages pulled and not
//! yet handled, whether a consume thread holds the queue, how far it is safe to commit,
//! and the queue's stop signal.
//!
//! # Offsets
//!
//! Messages are handled in queue order, one consume thread at a time per queue, so "every
//! message before this offset was handled" is a single number, the *committable* offset:
//! the first message taken by a handler and not finished, else the first message waiting,
//! else the offset the next pull starts at (the pulls may have skipped messages filtered
//! out by tag). A message that the handler gave up on counts as handled; one that was
//! never finished because the queue stopped does not, so whoever reads the queue next gets
//! it again.
//!
//! # Stopping
//!
//! [`ProcessQueue::stop`] takes effect under the state lock: after it, nothing pulled is
//! added, no consume thread takes a message, and the committable offset no longer moves
//! except as the handler that is running finishes. [`ProcessQueue::wait_idle`] then waits
//! for that handler. A blocking wait (a long poll, a retry pause) races the stop signal,
//! so stopping never waits for the network.
//!
//! This module does no I/O and starts no thread; the threads are in `push_consumer.rs`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::message::{MessageQueue, ReceivedMessage};

/// A signal raised once that any number of threads can wait for, blocking (with a
/// timeout) or as a future: the sender is dropped to raise it, and nothing is ever sent.
#[derive(Debug)]
pub(crate) struct StopSignal {
    sender: Mutex<Option<flume::Sender<()>>>,
    receiver: flume::Receiver<()>,
}

impl StopSignal {
    pub(crate) fn new() -> StopSignal {
        let (sender, receiver) = flume::bounded(1);
        StopSignal {
            sender: Mutex::new(Some(sender)),
            receiver,
        }
    }

    /// Raises the signal (again is nothing).
    pub(crate) fn raise(&self) {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Waits up to `timeout`; `true` if the signal is raised.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.receiver.recv_timeout(timeout),
            Err(flume::RecvTimeoutError::Disconnected)
        )
    }

    /// Runs `future` on this thread until it completes (`Some`) or the signal is raised
    /// (`None`; the future is dropped, abandoning what it waited for).
    pub(crate) fn until_raised<F: Future>(&self, future: F) -> Option<F::Output> {
        futures_lite::future::block_on(futures_lite::future::or(
            async { Some(future.await) },
            async {
                // Nothing is ever sent: this returns once the sender is dropped.
                let _ = self.receiver.recv_async().await;
                None
            },
        ))
    }
}

/// What the lock protects.
#[derive(Debug, Default)]
struct State {
    /// Pulled, not yet taken by a consume thread, in offset order.
    waiting: VecDeque<ReceivedMessage>,
    /// Messages taken by a consume thread and not yet handled.
    taken: usize,
    /// The offset of the first message taken and not handled (it stays after a stop
    /// interrupted the consume thread).
    unfinished_from: Option<u64>,
    /// A consume thread is handling messages of this queue.
    in_handler: bool,
    /// The queue is on the consume threads' work channel or held by one of them.
    scheduled: bool,
    /// Every offset below it was pulled (or skipped); `None` until the start is known.
    pulled_to: Option<u64>,
    stopped: bool,
}

impl State {
    fn in_flight(&self) -> usize {
        self.waiting.len() + self.taken
    }
}

/// One owned queue (see the module docs).
#[derive(Debug)]
pub(crate) struct ProcessQueue {
    /// The queue.
    pub(crate) queue: MessageQueue,
    stop: StopSignal,
    state: Mutex<State>,
    /// Signalled when messages are handled, a consume thread lets go, or the queue stops.
    changed: Condvar,
    /// The offset last committed (or found committed), to skip commits that change
    /// nothing.
    committed: Mutex<Option<u64>>,
}

impl ProcessQueue {
    pub(crate) fn new(queue: MessageQueue) -> ProcessQueue {
        ProcessQueue {
            queue,
            stop: StopSignal::new(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            committed: Mutex::new(None),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The queue's stop signal, for waits that must end when it stops.
    pub(crate) fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Stops the queue (see the module docs).
    pub(crate) fn stop(&self) {
        self.state().stopped = true;
        self.changed.notify_all();
        self.stop.raise();
    }

    /// Whether it was stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.state().stopped
    }

    /// Waits until no consume thread is handling its messages. Call after
    /// [`ProcessQueue::stop`]: then no handler starts again.
    pub(crate) fn wait_idle(&self) {
        let mut state = self.state();
        while state.in_handler {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The pulls start at `offset`.
    pub(crate) fn start_at(&self, offset: u64) {
        let mut state = self.state();
        if !state.stopped {
            state.pulled_to = Some(offset);
        }
    }

    /// Waits until fewer than `max_in_flight` messages are pulled and unhandled; returns
    /// how many more may be pulled, or `None` once stopped.
    pub(crate) fn wait_for_room(&self, max_in_flight: usize) -> Option<usize> {
        let mut state = self.state();
        loop {
            if state.stopped {
                return None;
            }
            if state.in_flight() < max_in_flight {
                return Some(max_in_flight - state.in_flight());
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Adds what a pull returned (in offset order) and where the next pull starts. Returns
    /// `true` if the caller must put the queue on the work channel (it was not there and
    /// now has messages). Dropped if the queue is stopped.
    pub(crate) fn deliver(&self, messages: Vec<ReceivedMessage>, next_offset: u64) -> bool {
        let mut state = self.state();
        if state.stopped {
            return false;
        }
        debug_assert!(messages
            .windows(2)
            .all(|pair| pair[0].offset < pair[1].offset));
        state.waiting.extend(messages);
        state.pulled_to = Some(next_offset);
        if state.scheduled || state.waiting.is_empty() {
            return false;
        }
        state.scheduled = true;
        true
    }

    /// The pulls continue at `next_offset` (the broker moved them: retention or a reset
    /// queue), with nothing delivered.
    pub(crate) fn skip_to(&self, next_offset: u64) {
        let mut state = self.state();
        if !state.stopped {
            state.pulled_to = Some(next_offset);
        }
    }

    /// For a consume thread: takes up to `max` waiting messages, or `None` (and lets go
    /// of the queue) if it is stopped or has none.
    pub(crate) fn take(&self, max: usize) -> Option<Vec<ReceivedMessage>> {
        let mut state = self.state();
        assert!(state.scheduled, "{}: taken while not scheduled", self.queue);
        assert!(!state.in_handler, "{}: two consume threads", self.queue);
        if state.stopped || state.waiting.is_empty() {
            state.scheduled = false;
            return None;
        }
        let count = max.min(state.waiting.len());
        let messages: Vec<ReceivedMessage> = state.waiting.drain(..count).collect();
        state.taken = messages.len();
        state.unfinished_from = messages.first().map(|message| message.offset);
        state.in_handler = true;
        Some(messages)
    }

    /// For a consume thread: `count` taken messages were handled; `next` is the offset of
    /// the next taken one, if any.
    pub(crate) fn handled(&self, count: usize, next: Option<u64>) {
        let mut state = self.state();
        assert!(
            count <= state.taken,
            "{}: handled more than taken",
            self.queue
        );
        state.taken -= count;
        state.unfinished_from = next;
        drop(state);
        self.changed.notify_all();
    }

    /// For a consume thread: done with this turn. Returns `true` if the queue has more
    /// messages and the caller must put it back on the work channel (it stays scheduled).
    pub(crate) fn release(&self) -> bool {
        let mut state = self.state();
        state.in_handler = false;
        // Taken but not handled: the queue stopped. They stay unfinished.
        state.taken = 0;
        let more = !state.stopped && !state.waiting.is_empty();
        state.scheduled = more;
        drop(state);
        self.changed.notify_all();
        more
    }

    /// The offset before which every message was handled (see the module docs); `None`
    /// until the start offset is known.
    pub(crate) fn committable(&self) -> Option<u64> {
        let state = self.state();
        state
            .unfinished_from
            .or_else(|| state.waiting.front().map(|message| message.offset))
            .or(state.pulled_to)
    }

    /// Messages pulled and not handled.
    pub(crate) fn in_flight(&self) -> usize {
        self.state().in_flight()
    }

    /// The offset last committed.
    pub(crate) fn committed(&self) -> Option<u64> {
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records that `offset` is committed.
    pub(crate) fn set_committed(&self, offset: u64) {
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(offset);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;

    fn message(offset: u64) -> ReceivedMessage {
        ReceivedMessage {
            topic: Arc::from("orders"),
            broker_name: Arc::from("broker-a"),
            queue_id: 0,
            offset,
            tag: None,
            keys: Vec::new(),
            properties: Vec::new(),
            body: Bytes::new(),
            born_timestamp_ms: 0,
            store_timestamp_ms: 0,
        }
    }

    fn messages(offsets: std::ops::Range<u64>) -> Vec<ReceivedMessage> {
        offsets.map(message).collect()
    }

    fn queue() -> ProcessQueue {
        ProcessQueue::new(MessageQueue::new("orders", "broker-a", 0))
    }

    #[test]
    fn committable_offset_follows_handled_messages_in_order() {
        let queue = queue();
        assert_eq!(queue.committable(), None);
        queue.start_at(10);
        assert_eq!(queue.committable(), Some(10));
        // Offsets 10..14 pulled, 14..16 filtered out by tag.
        assert!(queue.deliver(messages(10..14), 16));
        // Already scheduled: the next delivery does not schedule again.
        assert!(!queue.deliver(messages(16..17), 17));
        assert_eq!(queue.in_flight(), 5);
        assert_eq!(queue.committable(), Some(10));
        let taken = queue.take(3).unwrap();
        assert_eq!(taken.len(), 3);
        assert_eq!(queue.committable(), Some(10));
        queue.handled(1, Some(11));
        assert_eq!(queue.committable(), Some(11));
        queue.handled(2, None);
        // The first waiting message is next.
        assert_eq!(queue.committable(), Some(13));
        assert!(queue.release());
        let rest = queue.take(10).unwrap();
        assert_eq!(rest.iter().map(|m| m.offset).collect::<Vec<_>>(), [13, 16]);
        queue.handled(2, None);
        assert!(!queue.release());
        // Everything handled: up to where the pulls got, past the filtered messages.
        assert_eq!(queue.committable(), Some(17));
        assert_eq!(queue.in_flight(), 0);
        queue.skip_to(30);
        assert_eq!(queue.committable(), Some(30));
    }

    #[test]
    fn a_stop_keeps_unfinished_messages_uncommitted_and_drops_later_pulls() {
        let queue = queue();
        queue.start_at(0);
        assert!(queue.deliver(messages(0..4), 4));
        let taken = queue.take(4).unwrap();
        queue.handled(1, Some(taken[1].offset));
        queue.stop();
        assert!(queue.is_stopped());
        // The running handler's message and those after it stay unfinished.
        assert!(!queue.release());
        assert_eq!(queue.committable(), Some(1));
        assert!(!queue.deliver(messages(4..6), 6));
        queue.skip_to(100);
        queue.start_at(100);
        assert_eq!(queue.committable(), Some(1));
        assert_eq!(queue.wait_for_room(10), None);
        queue.wait_idle();
    }

    #[test]
    fn pulls_wait_for_room_until_messages_are_handled_or_the_queue_stops() {
        let queue = Arc::new(queue());
        queue.start_at(0);
        assert_eq!(queue.wait_for_room(4), Some(4));
        assert!(queue.deliver(messages(0..3), 3));
        assert_eq!(queue.wait_for_room(4), Some(1));
        queue.deliver(messages(3..4), 4);
        let waiter = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.wait_for_room(4))
        };
        let taken = queue.take(2).unwrap();
        queue.handled(taken.len(), None);
        assert_eq!(waiter.join().unwrap(), Some(2));

        let stopped = {
            let queue = queue.clone();
            std::thread::spawn(move || {
                queue.deliver(messages(4..6), 6);
                queue.wait_for_room(4)
            })
        };
        // Whether or not the thread delivered before the stop, it ends with `None`.
        queue.stop();
        assert_eq!(stopped.join().unwrap(), None);
    }

    #[test]
    fn stop_signal_ends_waits_and_futures() {
        let signal = Arc::new(StopSignal::new());
        assert!(!signal.wait(Duration::from_millis(1)));
        assert_eq!(signal.until_raised(async { 7 }), Some(7));
        let waiter = {
            let signal = signal.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let never = futures_lite::future::pending::<()>();
                (signal.until_raised(never), started.elapsed())
            })
        };
        signal.raise();
        let (result, _) = waiter.join().unwrap();
        assert_eq!(result, None);
        assert!(signal.wait(Duration::from_secs(60)));
        signal.raise();
    }
}
