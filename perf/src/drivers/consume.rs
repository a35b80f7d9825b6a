//! The consuming side of a load run: `consumers` threads splitting the topic's queues,
//! each keeping one long-polling pull in flight per queue it owns, from the earliest or
//! the latest offset, until a count, a duration, or (with `drain`) the end each queue had
//! when the run started.
//!
//! With `end_to_end`, every message's latency is the time from its born time (written
//! into the body by the producer, [`crate::message_body`]) to its receipt here — producer
//! and consumer share this machine's clock. With a [`Verification`], every message read is
//! handed to it (one lock per pull, not per message).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use spillway_client::{Client, MessageQueue, PullConsumer, PullResult};
use spillway_wire::{QueueId, QueueOffset};

use crate::drivers::error_kind;
use crate::message_body::{now_micros, parse_body};
use crate::stats::{Progress, Recorder};
use crate::verification::Verification;
use crate::LoadError;

/// Longest one pull waits for new messages, so stop and deadlines are seen promptly.
const PULL_WAIT: Duration = Duration::from_millis(500);
/// Pause after a failed pull before the queue is pulled again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The consumer group the load generator pulls as (it commits no offsets).
pub const CONSUMER_GROUP: &str = "spillway-perf";

/// Where consumers start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StartFrom {
    /// Each queue's first stored message.
    Earliest,
    /// Each queue's end when the run starts: only new messages.
    Latest,
}

/// What to consume and how.
#[derive(Clone, Debug)]
pub struct ConsumeOptions {
    /// The topic.
    pub topic: String,
    /// Consumer threads (queues are dealt to them round-robin).
    pub consumers: u32,
    /// Where to start.
    pub from: StartFrom,
    /// Stop after this many messages in total.
    pub messages: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once every queue is read up to where it ended when the run started.
    pub drain: bool,
    /// Most messages one pull returns.
    pub max_messages_per_pull: u32,
    /// Record end-to-end latency (born time in the body to receipt).
    pub end_to_end: bool,
    /// With `end_to_end`: messages born before this (µs since the Unix epoch) are the
    /// warm-up, read but not recorded. Shared, because it is only known once the producers
    /// start, after the consumers have found their positions.
    pub measure_born_from_us: Option<Arc<AtomicU64>>,
    /// Set once every queue's start offset is known (producers of an e2e run wait for it,
    /// or consumers starting at `Latest` could miss the first messages).
    pub positioned: Option<Arc<AtomicBool>>,
}

/// How a consume run ended (counts and latencies went to the progress).
pub struct ConsumeOutcome {
    /// From the first pull to the last message.
    pub elapsed: Duration,
    /// Messages read.
    pub messages: u64,
}

/// Runs the consumers until done or `stop` is set.
pub fn run(
    client: &Client,
    options: &ConsumeOptions,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
    consumed: &Arc<AtomicU64>,
    verification: Option<Arc<Mutex<Verification>>>,
) -> Result<ConsumeOutcome, LoadError> {
    let consumer = PullConsumer::with_client(client, CONSUMER_GROUP).map_err(LoadError::client)?;
    let queues = consumer.queues(&options.topic).map_err(LoadError::client)?;
    if queues.is_empty() {
        return Err(LoadError::Failed(format!(
            "topic {:?} has no queues",
            options.topic
        )));
    }
    let mut positions = Vec::with_capacity(queues.len());
    for queue in queues {
        let (min, max) = consumer.queue_offsets(&queue).map_err(LoadError::client)?;
        let start = match options.from {
            StartFrom::Earliest => min,
            StartFrom::Latest => max,
        };
        positions.push(QueuePosition {
            queue,
            next: start,
            end: options.drain.then_some(max),
        });
    }
    if let Some(positioned) = &options.positioned {
        positioned.store(true, Ordering::Release);
    }
    let consumers = options.consumers.max(1) as usize;
    let mut dealt: Vec<Vec<QueuePosition>> = (0..consumers).map(|_| Vec::new()).collect();
    for (index, position) in positions.into_iter().enumerate() {
        dealt[index % consumers].push(position);
    }
    let started = Instant::now();
    let deadline = options.duration.map(|duration| started + duration);
    let remaining = Arc::new(AtomicU64::new(options.messages.unwrap_or(u64::MAX)));
    let mut threads = Vec::new();
    for (index, queues) in dealt
        .into_iter()
        .enumerate()
        .filter(|(_, queues)| !queues.is_empty())
    {
        let worker = Worker {
            consumer: consumer.clone(),
            queues,
            options: options.clone(),
            progress: progress.clone(),
            stop: stop.clone(),
            deadline,
            remaining: remaining.clone(),
            consumed: consumed.clone(),
            verification: verification.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("consumer-{index}"))
            .spawn(move || futures_lite::future::block_on(worker.run()))
            .map_err(|source| {
                LoadError::io("starting a consumer thread for", "<threads>", source)
            })?;
        threads.push(thread);
    }
    for thread in threads {
        if thread.join().is_err() {
            return Err(LoadError::Failed("a consumer thread panicked".into()));
        }
    }
    Ok(ConsumeOutcome {
        elapsed: started.elapsed(),
        messages: consumed.load(Ordering::Relaxed),
    })
}

/// Where one queue is read next, and (draining) where it stops.
struct QueuePosition {
    queue: MessageQueue,
    next: u64,
    end: Option<u64>,
}

impl QueuePosition {
    fn done(&self) -> bool {
        self.end.is_some_and(|end| self.next >= end)
    }
}

type PullFuture = Pin<Box<dyn Future<Output = spillway_client::Result<PullResult>> + Send>>;

struct Worker {
    consumer: PullConsumer,
    queues: Vec<QueuePosition>,
    options: ConsumeOptions,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    deadline: Option<Instant>,
    remaining: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    verification: Option<Arc<Mutex<Verification>>>,
}

impl Worker {
    fn finished(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            || self.remaining.load(Ordering::Relaxed) == 0
            || self.queues.iter().all(QueuePosition::done)
    }

    fn pull(&self, index: usize) -> Option<PullFuture> {
        let position = &self.queues[index];
        if position.done() {
            return None;
        }
        Some(Box::pin(self.consumer.pull_async(
            &position.queue,
            position.next,
            self.options.max_messages_per_pull,
            PULL_WAIT,
            "",
        )))
    }

    async fn run(mut self) {
        let mut recorder = Recorder::new();
        let mut pulls: Vec<Option<PullFuture>> = (0..self.queues.len())
            .map(|index| self.pull(index))
            .collect();
        while !self.finished() {
            let Some((index, result)) = (PollAny {
                futures: &mut pulls,
            })
            .await
            else {
                break;
            };
            match result {
                Ok(pulled) => self.account(index, pulled, &mut recorder),
                Err(error) => {
                    recorder.record_error(error_kind(&error));
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
            pulls[index] = self.pull(index);
            self.progress.report_if_due(&mut recorder);
        }
        self.progress.report(&mut recorder);
    }

    fn account(&mut self, index: usize, pulled: PullResult, recorder: &mut Recorder) {
        let position = &mut self.queues[index];
        let count = pulled.messages.len() as u64;
        let (mut recorded, mut bytes) = (0u64, 0u64);
        if self.options.end_to_end {
            let now_us = now_micros();
            let measured_from_us = self
                .options
                .measure_born_from_us
                .as_ref()
                .map_or(0, |from| from.load(Ordering::Acquire));
            for message in &pulled.messages {
                let born_us = parse_body(&message.body).map(|(_, born_us)| born_us);
                if born_us.is_some_and(|born_us| born_us < measured_from_us) {
                    continue;
                }
                if let Some(born_us) = born_us {
                    recorder.record_latency_us(now_us.saturating_sub(born_us));
                }
                recorded += 1;
                bytes += message.body.len() as u64;
            }
        } else {
            recorded = count;
            bytes = pulled
                .messages
                .iter()
                .map(|message| message.body.len() as u64)
                .sum();
        }
        recorder.add_messages(recorded, bytes);
        if let Some(verification) = &self.verification {
            let mut verification = verification.lock().unwrap_or_else(PoisonError::into_inner);
            for message in &pulled.messages {
                verification.observe(
                    &position.queue.broker_name,
                    QueueId(message.queue_id),
                    QueueOffset(message.offset),
                    &message.body,
                );
            }
        }
        position.next = pulled.next_offset.max(position.next);
        self.consumed.fetch_add(count, Ordering::Relaxed);
        let _ = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                Some(left.saturating_sub(count))
            });
    }
}

/// Resolves with the first of `futures` to complete (its index and output), leaving its
/// slot empty; `None` when every slot is empty. Polls every pending future on each wake:
/// fine for the handful of queues one consumer thread owns.
struct PollAny<'a, F> {
    futures: &'a mut Vec<Option<F>>,
}

impl<F: Future + Unpin> Future for PollAny<'_, F> {
    type Output = Option<(usize, F::Output)>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let futures = &mut *self.get_mut().futures;
        if futures.iter().all(Option::is_none) {
            return Poll::Ready(None);
        }
        for (index, slot) in futures.iter_mut().enumerate() {
            if let Some(future) = slot {
                if let Poll::Ready(output) = Pin::new(future).poll(context) {
                    *slot = None;
                    return Poll::Ready(Some((index, output)));
                }
            }
        }
        Poll::Pending
    }
}
