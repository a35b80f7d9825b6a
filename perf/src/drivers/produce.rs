//! The producing side of a load run: `producers` threads, each with its own
//! [`Producer`] (its own batching and connections), each keeping a window of sends in
//! flight, optionally held to a rate, until a message count or a duration is reached.
//!
//! Every message body carries its id and born time ([`crate::message_body`]), so the
//! consuming side measures end-to-end latency and `verify` can check each one. With a
//! ledger, every acknowledgement is written down (id, broker, queue, offset, body CRC).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spillway_client::{Client, Message, Producer, ProducerConfig, RequestTimings, SendResult};
use spillway_wire::{QueueId, QueueOffset};

use crate::drivers::error_kind;
use crate::drivers::window::Window;
use crate::ledger::{Acknowledged, LedgerWriter};
use crate::message_body::{body_crc, fill_body_at, now_micros, MessageId};
use crate::rate_limiter::RateLimiter;
use crate::stats::{Progress, Recorder};
use crate::LoadError;

/// Acknowledgements a producer thread collects before writing them to the ledger.
const LEDGER_CHUNK: usize = 4096;

/// What to produce and how.
#[derive(Clone, Debug)]
pub struct ProduceOptions {
    /// The topic.
    pub topic: String,
    /// Body size of every message, in bytes (at least 16: id and born time).
    pub message_bytes: usize,
    /// Producer threads, each with its own producer.
    pub producers: u32,
    /// Stop after this many messages in total (split over the producers).
    pub messages: Option<u64>,
    /// Stop after this long (after the warm-up).
    pub duration: Option<Duration>,
    /// Send for this long first without recording anything but errors and ledger entries
    /// (connections open, the broker's write buffers are allocated and page-faulted): the
    /// figures then describe the steady state.
    pub warmup: Duration,
    /// Hold the producers to this many messages per second in total.
    pub rate: Option<f64>,
    /// Sends each producer keeps in flight.
    pub window: usize,
    /// The producers' batching linger.
    pub linger: Duration,
    /// The producers' batch size.
    pub batch_bytes: usize,
    /// The producers' `send_when_idle`.
    pub send_when_idle: bool,
    /// Write every acknowledgement here.
    pub ledger: Option<std::path::PathBuf>,
}

/// How a produce run ended (latencies, counts and errors went to the progress).
pub struct ProduceOutcome {
    /// From the end of the warm-up to the last acknowledgement.
    pub elapsed: Duration,
    /// Messages acknowledged during the warm-up (not in the progress).
    pub warmup_acknowledged: u64,
    /// Acknowledgements written to the ledger.
    pub ledger_entries: u64,
    /// Where the producers' requests after the warm-up spent their time, merged.
    pub request_timings: RequestTimings,
}

/// Runs the producers until done or `stop` is set; reports to `progress` as they go.
pub fn run(
    client: &Client,
    options: &ProduceOptions,
    progress: &Arc<Progress>,
    stop: &Arc<AtomicBool>,
) -> Result<ProduceOutcome, LoadError> {
    let ledger = match &options.ledger {
        Some(path) => Some(Arc::new(LedgerWriter::create(path)?)),
        None => None,
    };
    let started = Instant::now();
    let remaining = Arc::new(AtomicU64::new(options.messages.unwrap_or(u64::MAX)));
    let measured_from = started + options.warmup;
    let deadline = options.duration.map(|duration| measured_from + duration);
    let warmup_acknowledged = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for producer_index in 0..options.producers {
        let mut config = ProducerConfig::new(client.config().clone());
        config.linger = options.linger;
        config.batch_bytes = options.batch_bytes;
        config.send_when_idle = options.send_when_idle;
        let producer = Producer::start_on(client, config).map_err(LoadError::client)?;
        let worker = Worker {
            producer,
            producer_index,
            options: options.clone(),
            rate: options.rate.map(|rate| rate / f64::from(options.producers)),
            progress: progress.clone(),
            stop: stop.clone(),
            remaining: remaining.clone(),
            deadline,
            measured_from,
            warmup_acknowledged: warmup_acknowledged.clone(),
            ledger: ledger.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("producer-{producer_index}"))
            .spawn(move || worker.run())
            .map_err(|source| {
                LoadError::io("starting a producer thread for", "<threads>", source)
            })?;
        threads.push(thread);
    }
    let mut first_error = None;
    let mut request_timings = RequestTimings::default();
    for thread in threads {
        match thread.join() {
            Ok(Ok(timings)) => request_timings.add(&timings),
            Ok(Err(error)) => first_error = first_error.or(Some(error)),
            Err(_) => {
                first_error =
                    first_error.or(Some(LoadError::Failed("a producer thread panicked".into())))
            }
        }
    }
    let elapsed = measured_from.elapsed();
    if let Some(error) = first_error {
        return Err(error);
    }
    let ledger_entries = match ledger {
        Some(ledger) => Arc::into_inner(ledger)
            .ok_or_else(|| LoadError::Failed("the ledger is still in use".into()))?
            .finish()?,
        None => 0,
    };
    Ok(ProduceOutcome {
        elapsed,
        warmup_acknowledged: warmup_acknowledged.load(Ordering::Relaxed),
        ledger_entries,
        request_timings,
    })
}

/// At full speed, sends between looks at the run's deadline (well under a millisecond).
const DEADLINE_CHECK_SENDS: u64 = 64;

/// One producer thread.
struct Worker {
    producer: Producer,
    producer_index: u32,
    options: ProduceOptions,
    rate: Option<f64>,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    remaining: Arc<AtomicU64>,
    deadline: Option<Instant>,
    /// Sends before this are the warm-up: not recorded.
    measured_from: Instant,
    warmup_acknowledged: Arc<AtomicU64>,
    ledger: Option<Arc<LedgerWriter>>,
}

type SendFuture =
    Pin<Box<dyn std::future::Future<Output = spillway_client::Result<SendResult>> + Send>>;

/// One producer thread's accounting of completed sends.
struct Tally {
    recorder: Recorder,
    /// Acknowledgements not yet written to the ledger (kept only with a ledger).
    acknowledged: Vec<(MessageId, SendResult, u32)>,
    /// Acknowledgements of warm-up sends (not in the recorder).
    warmup_acknowledged: u64,
    message_bytes: u64,
    keep_for_ledger: bool,
}

impl Tally {
    /// Accounts for a send that completed after `latency`.
    fn complete(
        &mut self,
        latency: Duration,
        sent: Sent,
        result: spillway_client::Result<SendResult>,
    ) {
        match result {
            Ok(stored) => {
                if sent.measured {
                    self.recorder.record_latency(latency);
                    self.recorder.add_messages(1, self.message_bytes);
                } else {
                    self.warmup_acknowledged += 1;
                }
                if self.keep_for_ledger {
                    self.acknowledged.push((sent.id, stored, sent.crc));
                }
            }
            // Errors count, warm-up or not.
            Err(error) => self.recorder.record_error(error_kind(&error)),
        }
    }
}

/// What a send needs to be accounted for when it completes.
struct Sent {
    id: MessageId,
    crc: u32,
    /// Sent after the warm-up.
    measured: bool,
}

impl Worker {
    /// Sends until done; returns where the requests after the warm-up spent their time.
    fn run(self) -> Result<RequestTimings, LoadError> {
        let result = futures_lite::future::block_on(self.send_all());
        if let Err(error) = self.producer.close() {
            tracing::warn!(%error, "closing a producer");
        }
        result
    }

    /// Whether to send one more message. `sequence` is how many this worker sent: the
    /// deadline is looked at every [`DEADLINE_CHECK_SENDS`] sends (a clock read per message
    /// was 3% of a run's CPU at 100-byte messages), and at every send when held to a rate.
    fn take_one(&self, sequence: u64) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        let look = self.rate.is_some() || sequence % DEADLINE_CHECK_SENDS == 0;
        if look
            && self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return false;
        }
        self.remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }

    async fn send_all(&self) -> Result<RequestTimings, LoadError> {
        let mut tally = Tally {
            recorder: Recorder::new(),
            acknowledged: Vec::new(),
            warmup_acknowledged: 0,
            message_bytes: self.options.message_bytes as u64,
            keep_for_ledger: self.ledger.is_some(),
        };
        let mut window: Window<SendFuture, Sent> = Window::new(self.options.window);
        let mut limiter = RateLimiter::new(self.rate);
        let topic: Arc<str> = Arc::from(self.options.topic.as_str());
        let mut sequence = 0u64;
        let mut ledger_error = None;
        // Held to a rate, sends are far apart: read the clock (and look for acknowledgements)
        // at every send, or a stale time would be stamped into the born time and the
        // latency of an acknowledgement would include the wait for the next look.
        let (sends_per_clock, sends_per_ack_check) = match self.rate {
            Some(_) => (1, 1),
            None => (CoarseClock::FULL_SPEED_READS_PER_CLOCK, 32),
        };
        let mut clock = CoarseClock::new(sends_per_clock);
        // The requests' stage timings as the warm-up ended (taken at the first measured send).
        let mut timings_at_warmup_end = None;
        while self.take_one(sequence) {
            limiter.wait_for(1);
            let id = MessageId::new(self.producer_index, sequence);
            sequence += 1;
            let (now, born_us) = clock.now();
            // Filled in its own buffer, which becomes the message's `Bytes` as it is.
            let mut body = Vec::with_capacity(self.options.message_bytes);
            fill_body_at(id, born_us, self.options.message_bytes, &mut body);
            let crc = if self.ledger.is_some() {
                body_crc(&body)
            } else {
                0
            };
            let message = Message::new(topic.clone(), Bytes::from(body));
            let measured = now >= self.measured_from;
            if measured && timings_at_warmup_end.is_none() {
                timings_at_warmup_end = Some(self.producer.request_timings());
            }
            window.push(
                now,
                Sent { id, crc, measured },
                Box::pin(self.producer.send_async(message)),
            );
            if window.is_full() {
                window
                    .complete_some(|latency, sent, result| tally.complete(latency, sent, result))
                    .await;
            } else if sequence % sends_per_ack_check == 0 {
                // Acknowledgements are looked for every few sends (microseconds apart at
                // full speed), not only when the window is full.
                window
                    .complete_ready(|latency, sent, result| tally.complete(latency, sent, result))
                    .await;
            }
            // Looking at the clock per message costs more than the message: every 1024.
            if sequence % 1024 == 0 {
                self.progress.report_if_due(&mut tally.recorder);
            }
            if tally.acknowledged.len() >= LEDGER_CHUNK {
                if let Err(error) = self.write_ledger(&mut tally.acknowledged) {
                    ledger_error = Some(error);
                    break;
                }
            }
        }
        window
            .complete_all(|latency, sent, result| tally.complete(latency, sent, result))
            .await;
        if let Some(error) = ledger_error {
            return Err(error);
        }
        self.write_ledger(&mut tally.acknowledged)?;
        self.progress.report(&mut tally.recorder);
        self.warmup_acknowledged
            .fetch_add(tally.warmup_acknowledged, Ordering::Relaxed);
        Ok(match timings_at_warmup_end {
            Some(earlier) => {
                let mut timings = self.producer.request_timings();
                timings.subtract(&earlier);
                timings
            }
            None => RequestTimings::default(),
        })
    }

    fn write_ledger(
        &self,
        acknowledged: &mut Vec<(MessageId, SendResult, u32)>,
    ) -> Result<(), LoadError> {
        let Some(ledger) = &self.ledger else {
            return Ok(());
        };
        let entries: Vec<Acknowledged<'_>> = acknowledged
            .iter()
            .map(|(id, stored, crc)| Acknowledged {
                id: *id,
                broker_name: &stored.broker_name,
                queue_id: QueueId(stored.queue_id),
                queue_offset: QueueOffset(stored.offset),
                body_crc: *crc,
            })
            .collect();
        ledger.record_all(&entries)?;
        acknowledged.clear();
        Ok(())
    }
}

/// Send times read once per `reads_per_clock` messages: at full speed a clock read per
/// message cost a producer thread more than encoding the message, and the error is at most
/// the time to issue that many sends (microseconds). A rate-limited worker reads it for
/// every message.
struct CoarseClock {
    reads_per_clock: u32,
    reads: u32,
    now: Option<(Instant, u64)>,
}

impl CoarseClock {
    /// Messages per clock read when no rate is set.
    const FULL_SPEED_READS_PER_CLOCK: u32 = 16;

    fn new(reads_per_clock: u32) -> CoarseClock {
        CoarseClock {
            reads_per_clock: reads_per_clock.max(1),
            reads: 0,
            now: None,
        }
    }

    /// The send time (monotonic) and the born time (µs since the Unix epoch).
    fn now(&mut self) -> (Instant, u64) {
        self.reads += 1;
        match self.now {
            Some(now) if self.reads < self.reads_per_clock => now,
            _ => {
                self.reads = 0;
                let now = (Instant::now(), now_micros());
                self.now = Some(now);
                now
            }
        }
    }
}
