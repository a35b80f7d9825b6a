//! The producer's sender thread: decides when each broker shard's batches go, builds one
//! multi-part produce request per broker shard from them (sent on a connection bound to
//! that shard, so the broker appends without crossing shards), and settles every batch
//! when its answer comes: acknowledged, retried, or failed.
//!
//! # Why one thread
//!
//! Everything that decides what is in flight lives here and nowhere else: per-queue
//! in-flight counts, the keyed-order rules, retry queues, broker pauses, flush waiters.
//! Callers only touch their slot's lock; the connection's reader thread only posts the
//! answer on this thread's event channel. So this state needs no lock, and the rules
//! ("a keyed batch goes alone, after everything before it") are checked in one place.
//!
//! The thread sleeps on its event channel until an event (a batch opened or filled, an
//! answer, a flush, a close) or the nearest deadline (a linger ending, a retry backoff, a
//! broker pause ending). The batches it takes go out as they are, one payload piece each
//! (written with one vectored write), and stay shared for retries; a batch's buffer goes
//! back to its slot for reuse once the write and the answer are done with it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spillway_wire::message::{ProducePart, ProduceRequest, ProduceResponse, MAX_PRODUCE_PARTS};
use spillway_wire::{ErrorCode, Frame, QueueId};

use crate::batch::{Batch, BatchAck, BatchData, BrokerHealth, RecycledBuffer, Slot};
use crate::config::max_request_payload_bytes;
use crate::connection::{check_response, Reply};
use crate::error::{ClientError, Result};
use crate::producer::Shared;
use crate::request_timings::RequestStamps;

/// How long round-robin sends avoid a broker group after a failure that suggests it is
/// down or not serving (connection lost, timeout, not master, unavailable).
pub const BROKER_PAUSE: Duration = Duration::from_secs(1);
/// How soon the sender tries again when a connection has no free place for a request.
pub const PERMIT_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// What the sender thread hears about.
pub(crate) enum Event {
    /// A batch opened, filled up, or a blocked caller waits: look at the slots.
    Wake,
    /// A slot was created (for a topic's route).
    NewSlot(Arc<Slot>),
    /// The answer to (or the failure of) produce request `request`, read at `read`.
    Response {
        request: u64,
        result: Result<Frame>,
        read: Instant,
    },
    /// The route lookup for a topic with parked messages finished.
    RouteFetched { topic: Arc<str>, result: Result<()> },
    /// Answer once everything accepted so far is settled.
    Flush(flume::Sender<()>),
    /// Send everything held, then stop and answer.
    Close(flume::Sender<()>),
}

/// The sender's bookkeeping for one slot.
#[derive(Default)]
struct SlotFlight {
    /// Parts of this slot in requests in flight.
    in_flight: u32,
    /// One of them is keyed: nothing else of the slot may go until it is settled.
    keyed_in_flight: bool,
    /// Batches to send again, before anything new of the slot.
    retries: VecDeque<Batch>,
}

impl SlotFlight {
    /// Takes `batch` of `slot` into the request being built (`taken`, `total` payload
    /// bytes); returns whether it is keyed, in which case nothing more of the slot may
    /// follow it.
    fn take(
        &mut self,
        slot: &Arc<Slot>,
        batch: Batch,
        taken: &mut Vec<PartInFlight>,
        total: &mut usize,
    ) -> bool {
        *total += batch.data.len();
        self.in_flight += 1;
        let keyed = batch.keyed;
        taken.push(PartInFlight {
            slot: slot.clone(),
            batch,
        });
        if keyed {
            self.keyed_in_flight = true;
        }
        keyed
    }
}

/// A broker group and the slots whose requests go to its master.
struct BrokerQueues {
    health: Arc<BrokerHealth>,
    /// The shard of the broker these queues live on: requests go on a connection bound
    /// to it.
    shard: Option<u16>,
    slots: Vec<Arc<Slot>>,
    in_flight: usize,
    /// Rotates the slot a request starts with, so no queue always comes last.
    rotation: usize,
    paused_until: Option<Instant>,
}

/// One part of a request in flight: its slot and batch (data frozen as a payload slice).
struct PartInFlight {
    slot: Arc<Slot>,
    batch: Batch,
}

struct RequestInFlight {
    broker: usize,
    address: String,
    parts: Vec<PartInFlight>,
    /// When the first message of its oldest batch came, and when it was written.
    oldest_batch_opened: Instant,
    written: Instant,
}

struct FlushWaiter {
    epoch: u64,
    remaining: usize,
    done: flume::Sender<()>,
}

/// What an attempt to send to a broker did.
enum SendOutcome {
    /// A request went out (or its batches were settled): look again.
    Sent,
    /// Nothing could be taken.
    Nothing,
    /// The connection is full: try again at this time.
    Blocked(Instant),
}

/// The sender thread's state (see the module docs).
pub(crate) struct Sender {
    shared: Arc<Shared>,
    events: flume::Receiver<Event>,
    slots: Vec<Option<Arc<Slot>>>,
    flights: Vec<SlotFlight>,
    /// One entry per broker group and shard: a request carries the batches of one shard.
    brokers: Vec<BrokerQueues>,
    broker_index: HashMap<(Arc<str>, Option<u16>), usize>,
    in_flight: HashMap<u64, RequestInFlight>,
    next_request: u64,
    flushes: Vec<FlushWaiter>,
    /// Flushes waiting for the parked messages ahead of them to be taken off the parked
    /// queue (its `popped` count to reach the first number) before they count batches.
    deferred_flushes: Vec<(u64, flume::Sender<()>)>,
    /// Set once closing: the waiters to answer when done.
    closing: Option<Vec<flume::Sender<()>>>,
    /// A batch was queued for retry since [`Sender::pump`] started its pass.
    requeued: bool,
}

fn earliest(current: Option<Instant>, candidate: Option<Instant>) -> Option<Instant> {
    match (current, candidate) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>, events: flume::Receiver<Event>) -> Sender {
        Sender {
            shared,
            events,
            slots: Vec::new(),
            flights: Vec::new(),
            brokers: Vec::new(),
            broker_index: HashMap::new(),
            in_flight: HashMap::new(),
            next_request: 1,
            flushes: Vec::new(),
            deferred_flushes: Vec::new(),
            closing: None,
            requeued: false,
        }
    }

    /// The thread's loop: handle events, send what is ready, sleep until the next event or
    /// deadline; return once closed and everything is settled.
    pub(crate) fn run(mut self) {
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.handle(event);
            }
            // Memory freed by the answers just handled goes to parked messages first.
            self.shared.drain_parked();
            let mut deadline = self.pump();
            if !self.deferred_flushes.is_empty() {
                self.start_deferred_flushes();
                // Callers drain parked messages too, without telling this thread: look
                // again soon.
                deadline = earliest(deadline, Some(Instant::now() + PERMIT_RETRY_INTERVAL));
            }
            if self.is_finished() {
                self.finish();
                return;
            }
            let event = match deadline {
                Some(deadline) => self.events.recv_deadline(deadline).ok(),
                None => self.events.recv().ok(),
            };
            if let Some(event) = event {
                self.handle(event);
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Wake => self.shared.wake_pending.store(false, Ordering::SeqCst),
            Event::NewSlot(slot) => self.register(&slot),
            Event::Response {
                request,
                result,
                read,
            } => self.on_response(request, result, read),
            Event::RouteFetched { topic, result } => self.shared.route_fetched(&topic, result),
            Event::Flush(done) => {
                let pushed = self.shared.parked().pushed;
                self.deferred_flushes.push((pushed, done));
                self.start_deferred_flushes();
            }
            Event::Close(done) => {
                self.closing.get_or_insert_with(Vec::new).push(done);
            }
        }
    }

    /// Makes the sender aware of `slot` (idempotent).
    fn register(&mut self, slot: &Arc<Slot>) {
        if self.slots.len() <= slot.id {
            self.slots.resize_with(slot.id + 1, || None);
            self.flights.resize_with(slot.id + 1, SlotFlight::default);
        }
        if self.slots[slot.id].is_some() {
            return;
        }
        self.slots[slot.id] = Some(slot.clone());
        let key = (slot.broker.name.clone(), slot.shard);
        let broker = match self.broker_index.get(&key) {
            Some(&index) => index,
            None => {
                self.brokers.push(BrokerQueues {
                    health: slot.broker.clone(),
                    shard: slot.shard,
                    slots: Vec::new(),
                    in_flight: 0,
                    rotation: 0,
                    paused_until: None,
                });
                self.broker_index.insert(key, self.brokers.len() - 1);
                self.brokers.len() - 1
            }
        };
        self.brokers[broker].slots.push(slot.clone());
    }

    /// How long batches may wait for more messages: the configured linger, but none while
    /// closing, or while messages are parked (more are already waiting; with memory full,
    /// lingering batches would only hold the memory the parked messages wait for).
    fn linger(&self) -> Duration {
        if self.closing.is_some() || self.shared.has_parked() {
            Duration::ZERO
        } else {
            self.shared.config.linger
        }
    }

    /// Sends to every ready broker; returns when to look again (if nothing happens first).
    ///
    /// A send that fails at once (its connection already broken) queues its batches for
    /// retry, usually on another broker group, which this pass may have looked at already:
    /// so passes repeat until one queues no retry. Nothing else would wake the thread for
    /// those batches (a clean-clone CI run hung on exactly that, a blocking send waiting
    /// for a retry that sat in a slot looked at before the failure). Every retry spends one
    /// of its batch's attempts, so the passes end.
    fn pump(&mut self) -> Option<Instant> {
        loop {
            self.requeued = false;
            let next = self.pump_pass();
            if !self.requeued {
                return next;
            }
        }
    }

    /// One pass of [`Sender::pump`] over the brokers, in order.
    fn pump_pass(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let mut next = None;
        for broker in 0..self.brokers.len() {
            if self.brokers[broker]
                .paused_until
                .is_some_and(|until| until <= now)
            {
                self.brokers[broker].paused_until = None;
                self.brokers[broker]
                    .health
                    .paused
                    .store(false, Ordering::Relaxed);
            }
            loop {
                if self.brokers[broker].in_flight
                    >= self.shared.config.max_in_flight_requests_per_broker
                {
                    // Its answers will wake the thread.
                    break;
                }
                let (ready, deadline) = self.scan(broker, now);
                if !ready {
                    next = earliest(next, deadline);
                    break;
                }
                match self.send_to_broker(broker, now) {
                    SendOutcome::Sent => {}
                    SendOutcome::Nothing => {
                        next = earliest(next, deadline);
                        break;
                    }
                    SendOutcome::Blocked(retry_at) => {
                        next = earliest(next, Some(retry_at));
                        break;
                    }
                }
            }
            // Including a pause this pass began: round-robin returns to the broker once
            // it ends, even if nothing else wakes the thread.
            next = earliest(next, self.brokers[broker].paused_until);
        }
        next
    }

    /// Whether `broker` has something to send now, and else the earliest time it will.
    ///
    /// With `send_when_idle`, batches linger only while an earlier request to the same
    /// broker shard is in flight: for an idle shard they go at once. Under load there is
    /// almost always a request in flight, so batches still fill; at low rates a message no
    /// longer waits out a linger that gathers nothing.
    fn scan(&self, broker: usize, now: Instant) -> (bool, Option<Instant>) {
        let idle = self.brokers[broker].in_flight == 0;
        let linger = if idle && self.shared.config.send_when_idle {
            Duration::ZERO
        } else {
            self.linger()
        };
        let mut next = None;
        let mut ready = false;
        for slot in &self.brokers[broker].slots {
            let flight = &self.flights[slot.id];
            if flight.keyed_in_flight {
                continue;
            }
            if let Some(retry) = flight.retries.front() {
                match retry.not_before {
                    Some(at) if at > now => next = earliest(next, Some(at)),
                    _ if retry.keyed && flight.in_flight > 0 => {}
                    _ => ready = true,
                }
                // The retry goes first: nothing else of this slot before it.
                continue;
            }
            let readiness = slot.readiness(now, linger);
            if readiness.ready && !(readiness.next_is_keyed && flight.in_flight > 0) {
                ready = true;
            } else {
                next = earliest(next, readiness.linger_ends);
            }
        }
        (ready, next)
    }

    /// Takes what `broker`'s slots hold (within the request limits and the keyed rules)
    /// and sends it as one produce request.
    fn send_to_broker(&mut self, broker: usize, now: Instant) -> SendOutcome {
        let name = self.brokers[broker].health.name.clone();
        let shard = self.brokers[broker].shard;
        let address = self.shared.client.routes.master_address(&name);
        let connection = address
            .as_deref()
            .map(|address| self.shared.client.pool.get_bound(address, shard));
        let permit = match &connection {
            Some(connection) => match connection.try_permit() {
                Some(permit) => Some(permit),
                None => return SendOutcome::Blocked(now + PERMIT_RETRY_INTERVAL),
            },
            None => None,
        };
        let taken = self.take(broker, now);
        if taken.is_empty() {
            return SendOutcome::Nothing;
        }
        let (Some(address), Some(connection), Some(permit)) = (address, connection, permit) else {
            let error = ClientError::BrokerUnavailable {
                topic: taken[0].slot.topic.to_string(),
                broker_name: name.to_string(),
                reason: "the route names no master for the group",
            };
            self.pause(broker, now);
            self.settle_failed_parts(taken, &error, now);
            return SendOutcome::Sent;
        };

        // Each batch goes out as it is, a piece of the payload: the frame CRC leaves record
        // payloads to the records' own CRCs, so nothing needs them contiguous. A batch
        // built here is frozen into `Bytes` whose last drop (the writer's after the write,
        // the retry copy's after the answer) gives the buffer back to its slot.
        let batch_bytes = self.shared.config.batch_bytes;
        let mut taken = taken;
        let mut payload = Vec::with_capacity(taken.len());
        let mut parts = Vec::with_capacity(taken.len());
        let mut total = 0usize;
        for part in &mut taken {
            let data = std::mem::replace(&mut part.batch.data, BatchData::Frozen(Bytes::new()));
            let bytes = match data {
                BatchData::Building(buffer) => {
                    Bytes::from_owner(RecycledBuffer::new(buffer, part.slot.clone(), batch_bytes))
                }
                BatchData::Frozen(bytes) => bytes,
            };
            part.batch.data = BatchData::Frozen(bytes.clone());
            parts.push(ProducePart {
                topic: part.slot.topic.to_string(),
                queue_id: QueueId(part.slot.queue_id),
                record_count: part.batch.records(),
                // Within the frame limit, far below u32::MAX.
                payload_offset: total as u32,
                payload_length: bytes.len() as u32,
            });
            total += bytes.len();
            payload.push(bytes);
        }
        let part_count = parts.len() as u64;
        let request = ProduceRequest {
            producer_group: self.shared.config.producer_group.clone(),
            flush: self.shared.config.flush,
            parts,
        };
        let request_id = self.next_request;
        self.next_request += 1;
        let events = self.shared.events.clone();
        let reply = Reply::Callback(Box::new(move |result| {
            let _ = events.send(Event::Response {
                request: request_id,
                result,
                read: Instant::now(),
            });
        }));
        let oldest_batch_opened = taken
            .iter()
            .map(|part| part.batch.opened)
            .min()
            .unwrap_or(now);
        let written = Instant::now();
        let sent = connection.send(
            &request,
            payload,
            self.shared.client.config.request_timeout,
            reply,
            permit,
        );
        match sent {
            Ok(()) => {
                let counters = &self.shared.counters;
                counters.produce_requests.fetch_add(1, Ordering::Relaxed);
                counters
                    .produce_parts
                    .fetch_add(part_count, Ordering::Relaxed);
                counters
                    .payload_bytes
                    .fetch_add(total as u64, Ordering::Relaxed);
                self.brokers[broker].in_flight += 1;
                self.in_flight.insert(
                    request_id,
                    RequestInFlight {
                        broker,
                        address,
                        parts: taken,
                        oldest_batch_opened,
                        written,
                    },
                );
            }
            Err(error) => {
                if error.suggests_route_change() {
                    self.pause(broker, now);
                }
                self.settle_failed_parts(taken, &error, now);
            }
        }
        SendOutcome::Sent
    }

    /// Takes the batches of `broker`'s slots for one request: each slot's retries first,
    /// then its sealed batches, then its open one; a keyed batch only when nothing else of
    /// its slot is in flight (or taken), and then nothing after it. Marks them in flight.
    fn take(&mut self, broker: usize, now: Instant) -> Vec<PartInFlight> {
        let max_payload = max_request_payload_bytes(self.shared.client.config.max_frame_bytes);
        let slot_count = self.brokers[broker].slots.len();
        let start = self.brokers[broker].rotation;
        self.brokers[broker].rotation = start.wrapping_add(1);
        let mut taken: Vec<PartInFlight> = Vec::new();
        let mut total = 0usize;
        for step in 0..slot_count {
            if taken.len() >= MAX_PRODUCE_PARTS {
                break;
            }
            let slot = self.brokers[broker].slots[(start + step) % slot_count].clone();
            let flight = &mut self.flights[slot.id];
            if flight.keyed_in_flight {
                continue;
            }
            let mut slot_blocked = false;
            while let Some(retry) = flight.retries.front() {
                let length = retry.data.len();
                let fits = taken.is_empty()
                    || (total + length <= max_payload && taken.len() < MAX_PRODUCE_PARTS);
                let due = retry.not_before.is_none_or(|at| at <= now);
                if !due || !fits || (retry.keyed && flight.in_flight > 0) {
                    slot_blocked = true;
                    break;
                }
                let Some(mut batch) = flight.retries.pop_front() else {
                    break;
                };
                batch.not_before = None;
                if flight.take(&slot, batch, &mut taken, &mut total) {
                    slot_blocked = true;
                    break;
                }
            }
            if slot_blocked {
                continue;
            }
            loop {
                let in_flight = flight.in_flight;
                let parts = taken.len();
                let batch = slot.take_next(|keyed, length| {
                    (!keyed || in_flight == 0)
                        && (parts == 0
                            || (total + length <= max_payload && parts < MAX_PRODUCE_PARTS))
                });
                let Some(batch) = batch else {
                    break;
                };
                if flight.take(&slot, batch, &mut taken, &mut total) {
                    break;
                }
            }
        }
        taken
    }

    /// Undoes the in-flight marks of parts that are being settled.
    fn land(&mut self, parts: &[PartInFlight]) {
        for part in parts {
            let flight = &mut self.flights[part.slot.id];
            flight.in_flight -= 1;
            if part.batch.keyed {
                flight.keyed_in_flight = false;
            }
        }
    }

    fn settle_failed_parts(&mut self, parts: Vec<PartInFlight>, error: &ClientError, now: Instant) {
        self.land(&parts);
        for part in parts {
            self.retry_or_fail(part.slot, part.batch, error.clone(), now);
        }
    }

    fn on_response(&mut self, request_id: u64, result: Result<Frame>, read: Instant) {
        let Some(request) = self.in_flight.remove(&request_id) else {
            return;
        };
        self.brokers[request.broker].in_flight -= 1;
        self.land(&request.parts);
        let now = Instant::now();
        self.shared.request_timings().record(RequestStamps {
            oldest_batch_opened: request.oldest_batch_opened,
            written: request.written,
            answer_read: read,
            settled: now,
        });
        let outcome = result.and_then(|frame| {
            check_response(&frame, &request.address, "produce")?;
            let response = frame.header::<ProduceResponse>()?;
            if response.parts.len() != request.parts.len() {
                return Err(ClientError::bad_response(
                    &request.address,
                    format!(
                        "{} produce results for {} parts",
                        response.parts.len(),
                        request.parts.len()
                    ),
                ));
            }
            Ok(response
                .parts
                .iter()
                .map(|part| {
                    (
                        part.error_code.to_native(),
                        part.first_offset.to_native().0,
                        part.record_count.to_native(),
                    )
                })
                .collect::<Vec<_>>())
        });
        let results = match outcome {
            Ok(results) => results,
            Err(error) => {
                if pauses_broker(&error) {
                    self.pause(request.broker, now);
                }
                for part in request.parts {
                    self.retry_or_fail(part.slot, part.batch, error.clone(), now);
                }
                return;
            }
        };
        for (part, (code, first_offset, record_count)) in request.parts.into_iter().zip(results) {
            let describe = || {
                format!(
                    "produce to {}/{} on {} at {}",
                    part.slot.topic, part.slot.queue_id, part.slot.broker.name, request.address
                )
            };
            if code == ErrorCode::Ok.as_u16() {
                if record_count == part.batch.records() {
                    self.acknowledge(&part.slot, part.batch, first_offset);
                } else {
                    let error = ClientError::bad_response(
                        &request.address,
                        format!(
                            "{}: {record_count} records stored of {} sent",
                            describe(),
                            part.batch.records()
                        ),
                    );
                    self.fail(part.batch, error);
                }
                continue;
            }
            let error = match ErrorCode::try_from(code) {
                Ok(code) => ClientError::Broker {
                    code,
                    message: describe(),
                },
                Err(unknown) => ClientError::UnknownErrorCode {
                    code: unknown.0,
                    message: describe(),
                },
            };
            if pauses_broker(&error) {
                self.pause(request.broker, now);
            }
            self.retry_or_fail(part.slot, part.batch, error, now);
        }
    }

    /// Round-robin sends avoid `broker`'s group (every shard of it) for [`BROKER_PAUSE`].
    fn pause(&mut self, broker: usize, now: Instant) {
        let health = self.brokers[broker].health.clone();
        for queues in &mut self.brokers {
            if Arc::ptr_eq(&queues.health, &health) {
                queues.paused_until = Some(now + BROKER_PAUSE);
            }
        }
        health.paused.store(true, Ordering::Relaxed);
    }

    /// Sends a failed batch again (same slot if keyed, else another broker group's) if the
    /// error is retriable and attempts remain; fails it otherwise.
    fn retry_or_fail(
        &mut self,
        slot: Arc<Slot>,
        mut batch: Batch,
        error: ClientError,
        now: Instant,
    ) {
        if !error.is_retriable() || batch.attempts >= self.shared.config.retries {
            self.fail(batch, error);
            return;
        }
        batch.attempts += 1;
        self.requeued = true;
        self.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%error, topic = %slot.topic, queue = slot.queue_id, broker = %slot.broker.name, attempt = batch.attempts, "retrying a batch");
        if error.suggests_route_change() {
            self.shared.client.request_route_refresh(&slot.topic);
        }
        let backoff = self.shared.config.retry_backoff * batch.attempts;
        if batch.keyed {
            batch.not_before = Some(now + backoff);
            self.flights[slot.id].retries.push_front(batch);
            return;
        }
        let target = match self.shared.topic_state(&slot.topic) {
            Ok(Some(state)) => state.retry_target(&slot),
            _ => slot.clone(),
        };
        if Arc::ptr_eq(&target.broker, &slot.broker) {
            batch.not_before = Some(now + backoff);
        }
        self.register(&target);
        self.flights[target.id].retries.push_back(batch);
    }

    /// Settles a stored batch. Its memory is given back before its callers hear, so a
    /// caller woken by its answer never sees its own bytes still pending.
    fn acknowledge(&mut self, slot: &Slot, mut batch: Batch, first_offset: u64) {
        self.shared.budget.release(batch.data.len());
        self.shared
            .counters
            .messages_acknowledged
            .fetch_add(u64::from(batch.records()), Ordering::Relaxed);
        batch.settle(Ok(BatchAck {
            broker_name: slot.broker.name.clone(),
            queue_id: slot.queue_id,
            first_offset,
        }));
        self.settled(batch.epoch);
    }

    /// Settles a batch that failed for good (memory first, as in `acknowledge`).
    fn fail(&mut self, mut batch: Batch, error: ClientError) {
        let unheard =
            batch.records() as usize - batch.ticket_holders as usize - batch.singles.len();
        if unheard > 0 {
            tracing::warn!(%error, messages = unheard, "one-way messages failed");
        }
        self.shared.budget.release(batch.data.len());
        self.shared
            .counters
            .messages_failed
            .fetch_add(u64::from(batch.records()), Ordering::Relaxed);
        batch.settle(Err(error));
        self.settled(batch.epoch);
    }

    /// A batch of `epoch` is settled: count it off the flushes waiting for it.
    fn settled(&mut self, epoch: u64) {
        if self.flushes.is_empty() {
            return;
        }
        for waiter in &mut self.flushes {
            if epoch <= waiter.epoch {
                waiter.remaining -= 1;
            }
        }
        self.flushes.retain(|waiter| {
            if waiter.remaining == 0 {
                let _ = waiter.done.send(());
                false
            } else {
                true
            }
        });
    }

    /// Starts the deferred flushes whose parked messages have all left the parked queue.
    fn start_deferred_flushes(&mut self) {
        let popped = self.shared.parked().popped;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_flushes)
            .into_iter()
            .partition(|(pushed, _)| *pushed <= popped);
        self.deferred_flushes = waiting;
        for (_, done) in ready {
            self.on_flush(done);
        }
    }

    /// Seals every open batch and counts the batches of this epoch or earlier still
    /// unsettled; answers `done` when they all are.
    fn on_flush(&mut self, done: flume::Sender<()>) {
        let epoch = self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        let mut remaining = 0;
        for slot in self.slots.iter().flatten() {
            remaining += slot.seal_and_count(epoch);
            remaining += self.flights[slot.id]
                .retries
                .iter()
                .filter(|batch| batch.epoch <= epoch)
                .count();
        }
        remaining += self
            .in_flight
            .values()
            .flat_map(|request| &request.parts)
            .filter(|part| part.batch.epoch <= epoch)
            .count();
        if remaining == 0 {
            let _ = done.send(());
        } else {
            self.flushes.push(FlushWaiter {
                epoch,
                remaining,
                done,
            });
        }
    }

    /// Closing, with nothing left anywhere.
    fn is_finished(&self) -> bool {
        self.closing.is_some()
            && !self.shared.has_parked()
            && self.deferred_flushes.is_empty()
            && self.in_flight.is_empty()
            && self.flights.iter().all(|flight| flight.retries.is_empty())
            && self.slots.iter().flatten().all(|slot| slot.is_empty())
    }

    /// Closes every slot (failing whatever slipped in meanwhile) and answers the waiters.
    fn finish(mut self) {
        self.shared.close_parked();
        let slots = {
            let mut registry = self.shared.registry();
            registry.closed = true;
            registry.all_slots()
        };
        for slot in slots {
            for batch in slot.close() {
                self.fail(batch, ClientError::Closed);
            }
        }
        for waiter in self.flushes.drain(..) {
            let _ = waiter.done.send(());
        }
        for done in self.closing.take().unwrap_or_default() {
            let _ = done.send(());
        }
        // Answer flushes and closes that arrived while finishing.
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Flush(done) | Event::Close(done) => drop(done.send(())),
                Event::Wake
                | Event::NewSlot(_)
                | Event::Response { .. }
                | Event::RouteFetched { .. } => {}
            }
        }
    }
}

/// Whether a failure suggests the broker group is down or not serving writes.
fn pauses_broker(error: &ClientError) -> bool {
    match error {
        ClientError::Io { .. }
        | ClientError::Disconnected { .. }
        | ClientError::Timeout { .. }
        | ClientError::BrokerUnavailable { .. } => true,
        ClientError::Broker { code, .. } => {
            matches!(code, ErrorCode::ServiceUnavailable | ErrorCode::NotMaster)
        }
        _ => false,
    }
}
