//! [`Window`]: a bounded set of sends in flight on one producer thread, and when each one
//! completed.
//!
//! A producer thread keeps up to `capacity` `send_async` futures outstanding so batching
//! has something to batch. Acknowledgements of one producer arrive roughly in send order
//! (its batches go out in order), so the window awaits the oldest send and then takes
//! every following send that is already complete, without waiting. Latency is measured
//! when the thread observes the acknowledgement: at most the time between two
//! acknowledgements late for a send that completed out of order. That is the honest
//! figure for an application that awaits its sends in order, which is what this models.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

/// Sends in flight, oldest first, each with what the caller needs to account for it.
pub struct Window<F, T> {
    pending: VecDeque<(Instant, T, F)>,
    capacity: usize,
}

impl<F: Future + Unpin, T> Window<F, T> {
    /// An empty window of `capacity` (at least 1) sends.
    pub fn new(capacity: usize) -> Window<F, T> {
        Window {
            pending: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Whether another send must wait for one to complete.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.capacity
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds a send started at `started` with `context`.
    pub fn push(&mut self, started: Instant, context: T, send: F) {
        self.pending.push_back((started, context, send));
    }

    /// Waits for the oldest send, then takes every next one that is already done; calls
    /// `complete(latency, context, output)` for each, in send order. One clock read covers
    /// the sends taken together (they were observed at the same moment).
    pub async fn complete_some(&mut self, mut complete: impl FnMut(Duration, T, F::Output)) {
        let Some((started, context, send)) = self.pending.pop_front() else {
            return;
        };
        let output = send.await;
        let now = Instant::now();
        complete(now.saturating_duration_since(started), context, output);
        while let Some((_, _, send)) = self.pending.front_mut() {
            let Some(output) = futures_lite::future::poll_once(send).await else {
                break;
            };
            let (started, context, _) = self.pending.pop_front().expect("front exists");
            complete(now.saturating_duration_since(started), context, output);
        }
    }

    /// Takes the oldest sends that are already done, without waiting (so acknowledgements
    /// are seen when they arrive, not only when the window is full).
    pub async fn complete_ready(&mut self, mut complete: impl FnMut(Duration, T, F::Output)) {
        let mut now = None;
        while let Some((_, _, send)) = self.pending.front_mut() {
            let Some(output) = futures_lite::future::poll_once(send).await else {
                break;
            };
            let now = *now.get_or_insert_with(Instant::now);
            let (started, context, _) = self.pending.pop_front().expect("front exists");
            complete(now.saturating_duration_since(started), context, output);
        }
    }

    /// Waits for every send in flight.
    pub async fn complete_all(&mut self, mut complete: impl FnMut(Duration, T, F::Output)) {
        while !self.is_empty() {
            self.complete_some(&mut complete).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;

    type Boxed = Pin<Box<dyn Future<Output = u32> + Send>>;

    #[test]
    fn completes_in_order_and_takes_ready_followers() {
        let mut window: Window<Boxed, u32> = Window::new(3);
        let (sender, receiver) = flume::bounded::<u32>(1);
        let started = Instant::now();
        window.push(
            started,
            0,
            Box::pin(async move { receiver.recv_async().await.unwrap() }),
        );
        window.push(started, 1, Box::pin(async { 11 }));
        window.push(started, 2, Box::pin(std::future::pending()));
        assert!(window.is_full());
        sender.send(10).unwrap();
        let mut seen = Vec::new();
        futures_lite::future::block_on(
            window.complete_some(|_, context, output| seen.push((context, output))),
        );
        // The oldest, then the ready one behind it; the pending one stays.
        assert_eq!(seen, [(0, 10), (1, 11)]);
        assert!(!window.is_full());
        assert!(!window.is_empty());
    }
}
