//! The producer's per-queue accumulators: a [`Slot`] per (topic, broker group, queue)
//! gathers the messages bound for that queue into one growing batch buffer, which the
//! sender thread takes whole and sends as one part of a produce request.
//!
//! # Why like this
//!
//! The hot path of a send is: pick a slot, lock it, encode the message straight into the
//! slot's open batch (`RecordBuilder` writes the record and its CRC in place), take a
//! [`Ticket`] on the batch's outcome, unlock. No allocation, no syscall, no hand-off to
//! another thread per message: the sender thread is woken only when a batch opens (to arm
//! its linger timer), fills up, or a blocked caller waits for it. Different queues have
//! different locks, so callers sending round-robin rarely meet.
//!
//! # One completion per batch
//!
//! A batch's messages are acknowledged together (one first offset, then one each), so
//! their callers wait on one [`BatchReply`]: an outcome set once, and a flume channel that
//! carries nothing and whose sender is dropped when the outcome is set. Disconnecting
//! wakes every waiter at once, blocking (`recv`) or async (`recv_async`, under any
//! runtime), so settling a batch costs the sender thread the same for one message as for
//! ten thousand, and a message costs one reference count, not a channel. A [`Ticket`] is
//! the batch's reply and the message's index in the batch. Messages that waited in the
//! parked queue already have a future before they have a batch: they keep a channel of
//! their own (`SingleReply`), answered one by one.
//!
//! A batch that reaches `batch_bytes` is *sealed* (queued behind the open one) and a new one
//! opens; the sender takes sealed batches, then the open one. It takes a batch's buffer
//! out under the lock and copies it into the request outside the lock, then gives the
//! buffer back ([`Slot::recycle`]), so a steady stream reuses the same few buffers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use bytes::Bytes;

use crate::error::{ClientError, Result};
use crate::message::{Message, SendResult};

/// Buffers a slot keeps for reuse. A taken batch's buffer is out until its request is
/// answered, and a broker has at most a few requests in flight, so a slot cycles through
/// about that many buffers plus the open one.
const SPARE_BUFFERS: usize = 4;
/// Smallest buffer a new batch starts with.
const MIN_BATCH_CAPACITY: usize = 4 << 10;

/// The reply channel of a message that waited in the parked queue.
pub(crate) type SingleReply = flume::Sender<Result<SendResult>>;

/// What a message's caller wants to hear.
pub(crate) enum ReplyWanted {
    /// Nothing (one-way).
    Nothing,
    /// A [`Ticket`] on the batch's outcome.
    Ticket,
    /// An answer on its own channel.
    Single(SingleReply),
}

/// Where a batch was stored.
#[derive(Clone, Debug)]
pub(crate) struct BatchAck {
    pub(crate) broker_name: Arc<str>,
    pub(crate) queue_id: u32,
    pub(crate) first_offset: u64,
}

/// A batch's outcome, shared by its messages' callers (see the module docs).
pub(crate) struct BatchReply {
    outcome: OnceLock<Result<BatchAck>>,
    /// Never carries anything: disconnects (waking every waiter) once `outcome` is set.
    settled: flume::Receiver<()>,
}

/// The settling side of a [`BatchReply`], kept with the batch.
pub(crate) struct BatchSettler {
    reply: Arc<BatchReply>,
    _settle: flume::Sender<()>,
}

impl BatchSettler {
    fn new() -> BatchSettler {
        let (settle, settled) = flume::bounded(1);
        BatchSettler {
            reply: Arc::new(BatchReply {
                outcome: OnceLock::new(),
                settled,
            }),
            _settle: settle,
        }
    }

    /// Sets the outcome and wakes every waiter.
    pub(crate) fn settle(self, outcome: Result<BatchAck>) {
        let _ = self.reply.outcome.set(outcome);
        // Dropping `self` drops the sender: the channel disconnects.
    }
}

/// One message's claim on its batch's outcome.
pub(crate) struct Ticket {
    reply: Arc<BatchReply>,
    index: u32,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("index", &self.index)
            .field("settled", &self.reply.outcome.get().is_some())
            .finish()
    }
}

impl Ticket {
    fn result(&self) -> Result<SendResult> {
        match self.reply.outcome.get() {
            Some(Ok(ack)) => Ok(SendResult {
                broker_name: ack.broker_name.clone(),
                queue_id: ack.queue_id,
                offset: ack.first_offset + u64::from(self.index),
            }),
            Some(Err(error)) => Err(error.clone()),
            // The batch was dropped unsettled: the producer stopped.
            None => Err(ClientError::Closed),
        }
    }

    /// Waits (as a future) for the batch to settle.
    pub(crate) async fn wait(self) -> Result<SendResult> {
        if self.reply.outcome.get().is_none() {
            // Returns (disconnected) once settled.
            let _ = self.reply.settled.recv_async().await;
        }
        self.result()
    }

    /// Waits (blocking) for the batch to settle.
    pub(crate) fn wait_blocking(self) -> Result<SendResult> {
        if self.reply.outcome.get().is_none() {
            let _ = self.reply.settled.recv();
        }
        self.result()
    }
}

/// A broker group as producers see it: its name, and whether round-robin sends avoid it
/// for now (it failed recently).
#[derive(Debug)]
pub(crate) struct BrokerHealth {
    pub(crate) name: Arc<str>,
    pub(crate) paused: AtomicBool,
}

impl BrokerHealth {
    pub(crate) fn new(name: Arc<str>) -> BrokerHealth {
        BrokerHealth {
            name,
            paused: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// A batch's bytes: being built (owned, growing) or taken into a request (a slice of the
/// request payload, kept for a retry).
pub(crate) enum BatchData {
    Building(Vec<u8>),
    Frozen(Bytes),
}

impl BatchData {
    pub(crate) fn len(&self) -> usize {
        match self {
            BatchData::Building(buffer) => buffer.len(),
            BatchData::Frozen(bytes) => bytes.len(),
        }
    }
}

/// Records for one queue, sent (and acknowledged) together, and their callers' replies.
pub(crate) struct Batch {
    pub(crate) data: BatchData,
    /// Records in `data`.
    pub(crate) records: u32,
    /// The outcome the records' [`Ticket`]s wait on, once one is taken.
    pub(crate) settler: Option<BatchSettler>,
    /// Records whose callers hold a [`Ticket`].
    pub(crate) ticket_holders: u32,
    /// Records answered on their own channel: (index in the batch, channel).
    pub(crate) singles: Vec<(u32, SingleReply)>,
    /// Whether any record was sent with a key: the batch then keeps its queue on retries
    /// and is sent only when nothing else of its queue is in flight.
    pub(crate) keyed: bool,
    /// The producer's flush epoch when the batch opened.
    pub(crate) epoch: u64,
    /// Sends that failed so far.
    pub(crate) attempts: u32,
    /// When its first record arrived (linger counts from here).
    pub(crate) opened: Instant,
    /// Not to be sent before this (a keyed retry's backoff).
    pub(crate) not_before: Option<Instant>,
}

impl Batch {
    pub(crate) fn records(&self) -> u32 {
        self.records
    }

    /// Answers every record's caller: `first_offset` onwards, or the error.
    pub(crate) fn settle(&mut self, outcome: Result<BatchAck>) {
        for (index, single) in self.singles.drain(..) {
            let result = match &outcome {
                Ok(ack) => Ok(SendResult {
                    broker_name: ack.broker_name.clone(),
                    queue_id: ack.queue_id,
                    offset: ack.first_offset + u64::from(index),
                }),
                Err(error) => Err(error.clone()),
            };
            let _ = single.send(result);
        }
        if let Some(settler) = self.settler.take() {
            settler.settle(outcome);
        }
    }
}

/// The state of a slot behind its lock.
struct SlotState {
    open: Option<Batch>,
    sealed: VecDeque<Batch>,
    spare: Vec<Vec<u8>>,
    /// Size of the last batch taken: new buffers start this large.
    capacity_hint: usize,
    /// A caller is blocked on a message of the open batch: send it without lingering.
    urgent: bool,
    /// The producer closed: no more appends.
    closed: bool,
}

/// What the sender learns about a slot when it looks.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SlotReadiness {
    /// Something should be sent now.
    pub(crate) ready: bool,
    /// Otherwise, when the open batch's linger ends.
    pub(crate) linger_ends: Option<Instant>,
    /// The next batch to take is keyed.
    pub(crate) next_is_keyed: bool,
}

/// One queue's accumulator (see the module docs).
pub(crate) struct Slot {
    /// Dense index, for the sender's per-slot bookkeeping.
    pub(crate) id: usize,
    pub(crate) topic: Arc<str>,
    pub(crate) broker: Arc<BrokerHealth>,
    pub(crate) queue_id: u32,
    /// The broker shard owning the queue, per the route the slot was made from: its
    /// batches go on a connection bound to that shard. `None` if the route did not say.
    pub(crate) shard: Option<u16>,
    state: Mutex<SlotState>,
}

/// A taken batch's buffer, shared as `Bytes` by the request writer and the batch's retry
/// copy; back to its slot for reuse (a fresh 256 KiB buffer per batch costs a page fault
/// per 4 KiB on first touch) when the last of them drops.
pub(crate) struct RecycledBuffer {
    buffer: Vec<u8>,
    slot: Arc<Slot>,
    batch_bytes: usize,
}

impl RecycledBuffer {
    pub(crate) fn new(buffer: Vec<u8>, slot: Arc<Slot>, batch_bytes: usize) -> RecycledBuffer {
        RecycledBuffer {
            buffer,
            slot,
            batch_bytes,
        }
    }
}

impl AsRef<[u8]> for RecycledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for RecycledBuffer {
    fn drop(&mut self) {
        self.slot
            .recycle(std::mem::take(&mut self.buffer), self.batch_bytes);
    }
}

impl Slot {
    pub(crate) fn new(
        id: usize,
        topic: Arc<str>,
        broker: Arc<BrokerHealth>,
        queue_id: u32,
        shard: Option<u16>,
    ) -> Slot {
        Slot {
            id,
            topic,
            broker,
            queue_id,
            shard,
            state: Mutex::new(SlotState {
                open: None,
                sealed: VecDeque::new(),
                spare: Vec::new(),
                capacity_hint: MIN_BATCH_CAPACITY,
                urgent: false,
                closed: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes `message` (`length` bytes once encoded) into the open batch. Returns whether
    /// the sender should be woken (a batch opened or sealed, or `urgent`), and the
    /// message's ticket if it asked for one. On failure the single reply, if any, is handed
    /// back unanswered.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &self,
        message: &Message,
        length: usize,
        reply: ReplyWanted,
        keyed: bool,
        urgent: bool,
        batch_bytes: usize,
        epoch: &AtomicU64,
    ) -> std::result::Result<(bool, Option<Ticket>), (ClientError, Option<SingleReply>)> {
        let mut state = self.state();
        let single = |reply: ReplyWanted| match reply {
            ReplyWanted::Single(single) => Some(single),
            ReplyWanted::Nothing | ReplyWanted::Ticket => None,
        };
        if state.closed {
            return Err((ClientError::Closed, single(reply)));
        }
        let mut wake = urgent;
        let full = state
            .open
            .as_ref()
            .is_some_and(|open| open.data.len() + length > batch_bytes);
        if full {
            state.seal_open();
            wake = true;
        }
        if state.open.is_none() {
            let capacity = state.capacity_hint.max(length);
            let buffer = state
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(capacity));
            state.open = Some(Batch {
                data: BatchData::Building(buffer),
                records: 0,
                settler: None,
                ticket_holders: 0,
                singles: Vec::new(),
                keyed: false,
                epoch: epoch.load(Ordering::SeqCst),
                attempts: 0,
                opened: Instant::now(),
                not_before: None,
            });
            wake = true;
        }
        let Some(open) = state.open.as_mut() else {
            unreachable!("a batch was just opened");
        };
        let BatchData::Building(buffer) = &mut open.data else {
            unreachable!("an open batch is always being built");
        };
        if let Err(error) = message.encode_into(buffer) {
            if open.records == 0 {
                // Leave no empty batch behind.
                if let Some(Batch {
                    data: BatchData::Building(buffer),
                    ..
                }) = state.open.take()
                {
                    state.spare.push(buffer);
                }
            }
            return Err((error, single(reply)));
        }
        let index = open.records;
        open.records += 1;
        open.keyed |= keyed;
        let ticket = match reply {
            ReplyWanted::Nothing => None,
            ReplyWanted::Single(single) => {
                open.singles.push((index, single));
                None
            }
            ReplyWanted::Ticket => {
                open.ticket_holders += 1;
                let settler = open.settler.get_or_insert_with(BatchSettler::new);
                Some(Ticket {
                    reply: settler.reply.clone(),
                    index,
                })
            }
        };
        if open.data.len() >= batch_bytes {
            state.seal_open();
            wake = true;
        }
        if urgent {
            state.urgent = true;
        }
        Ok((wake, ticket))
    }

    /// Whether the slot has something to send now, given `linger` and whether the
    /// producer is forcing everything out (flush, close).
    pub(crate) fn readiness(&self, now: Instant, linger: std::time::Duration) -> SlotReadiness {
        let state = self.state();
        if let Some(first) = state.sealed.front() {
            return SlotReadiness {
                ready: true,
                linger_ends: None,
                next_is_keyed: first.keyed,
            };
        }
        let Some(open) = &state.open else {
            return SlotReadiness::default();
        };
        let linger_ends = open.opened + linger;
        SlotReadiness {
            ready: state.urgent || linger_ends <= now,
            linger_ends: Some(linger_ends),
            next_is_keyed: open.keyed,
        }
    }

    /// Whether anything is waiting in the slot.
    pub(crate) fn is_empty(&self) -> bool {
        let state = self.state();
        state.open.is_none() && state.sealed.is_empty()
    }

    /// Seals the open batch (flush, close): everything in the slot becomes sendable.
    /// Returns how many of its batches have an epoch at or below `epoch`.
    pub(crate) fn seal_and_count(&self, epoch: u64) -> usize {
        let mut state = self.state();
        state.seal_open();
        state
            .sealed
            .iter()
            .filter(|batch| batch.epoch <= epoch)
            .count()
    }

    /// Takes the next batch if `accept` agrees to its keyed flag and size (sealed batches
    /// first, then the open one, whether or not its linger ended).
    pub(crate) fn take_next(&self, accept: impl FnOnce(bool, usize) -> bool) -> Option<Batch> {
        let mut state = self.state();
        let (keyed, length) = match (state.sealed.front(), &state.open) {
            (Some(batch), _) | (None, Some(batch)) => (batch.keyed, batch.data.len()),
            (None, None) => return None,
        };
        if !accept(keyed, length) {
            return None;
        }
        if let Some(batch) = state.sealed.pop_front() {
            return Some(batch);
        }
        state.urgent = false;
        let batch = state.open.take()?;
        state.capacity_hint = batch.data.len().max(MIN_BATCH_CAPACITY);
        Some(batch)
    }

    /// Gives a taken batch's buffer back for reuse, unless it is oversized for `batch_bytes`.
    pub(crate) fn recycle(&self, mut buffer: Vec<u8>, batch_bytes: usize) {
        if buffer.capacity() > 2 * batch_bytes {
            return;
        }
        buffer.clear();
        let mut state = self.state();
        if state.spare.len() < SPARE_BUFFERS {
            state.spare.push(buffer);
        }
    }

    /// Refuses further appends and takes whatever is left (closing).
    pub(crate) fn close(&self) -> Vec<Batch> {
        let mut state = self.state();
        state.closed = true;
        state.seal_open();
        state.sealed.drain(..).collect()
    }
}

impl SlotState {
    fn seal_open(&mut self) {
        if let Some(open) = self.open.take() {
            self.capacity_hint = open.data.len().max(MIN_BATCH_CAPACITY);
            self.sealed.push_back(open);
        }
        self.urgent = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn slot() -> Slot {
        Slot::new(
            0,
            Arc::from("t"),
            Arc::new(BrokerHealth::new(Arc::from("b"))),
            0,
            None,
        )
    }

    fn append(slot: &Slot, message: &Message, keyed: bool, urgent: bool, limit: usize) -> bool {
        let epoch = AtomicU64::new(0);
        let length = message.encoded_len();
        slot.append(
            message,
            length,
            ReplyWanted::Nothing,
            keyed,
            urgent,
            limit,
            &epoch,
        )
        .unwrap()
        .0
    }

    #[test]
    fn batches_seal_at_the_size_limit_and_wake_only_on_changes() {
        let slot = slot();
        let message = Message::new("t", vec![0u8; 400]);
        let limit = 3 * message.encoded_len();
        // The first message opens a batch: wake.
        assert!(append(&slot, &message, false, false, limit));
        // The second joins it: no wake.
        assert!(!append(&slot, &message, false, false, limit));
        // The third fills it: sealed, wake.
        assert!(append(&slot, &message, false, false, limit));
        let readiness = slot.readiness(Instant::now(), Duration::from_secs(60));
        assert!(readiness.ready);
        // A fourth opens the next batch, behind the sealed one.
        assert!(append(&slot, &message, true, false, limit));
        let first = slot.take_next(|_, _| true).unwrap();
        assert_eq!(first.records(), 3);
        assert!(!first.keyed);
        // The open batch is young: not ready, but takeable.
        let readiness = slot.readiness(Instant::now(), Duration::from_secs(60));
        assert!(!readiness.ready && readiness.linger_ends.is_some() && readiness.next_is_keyed);
        let second = slot.take_next(|keyed, _| keyed).unwrap();
        assert_eq!(second.records(), 1);
        assert!(slot.is_empty());
        let BatchData::Building(buffer) = first.data else {
            panic!("a taken batch is still owned");
        };
        slot.recycle(buffer, limit);
        assert!(append(&slot, &message, false, true, limit));
        assert!(
            slot.readiness(Instant::now(), Duration::from_secs(60))
                .ready,
            "urgent"
        );
    }

    #[test]
    fn tickets_and_single_replies_get_their_own_offsets_when_the_batch_settles() {
        let slot = slot();
        let epoch = AtomicU64::new(0);
        let message = Message::new("t", vec![1u8; 10]);
        let length = message.encoded_len();
        let mut tickets = Vec::new();
        let (single, answer) = flume::bounded(1);
        for index in 0..4 {
            let reply = match index {
                1 => ReplyWanted::Nothing,
                2 => ReplyWanted::Single(single.clone()),
                _ => ReplyWanted::Ticket,
            };
            let (_, ticket) = slot
                .append(&message, length, reply, false, false, 1 << 20, &epoch)
                .unwrap();
            tickets.extend(ticket);
        }
        let mut batch = slot.take_next(|_, _| true).unwrap();
        assert_eq!((batch.records(), batch.ticket_holders), (4, 2));
        let waiter = {
            let ticket = tickets.pop().unwrap();
            std::thread::spawn(move || futures_lite::future::block_on(ticket.wait()))
        };
        batch.settle(Ok(BatchAck {
            broker_name: Arc::from("b"),
            queue_id: 3,
            first_offset: 100,
        }));
        assert_eq!(waiter.join().unwrap().unwrap().offset, 103);
        let first = tickets.pop().unwrap().wait_blocking().unwrap();
        assert_eq!((first.offset, first.queue_id), (100, 3));
        assert_eq!(answer.recv().unwrap().unwrap().offset, 102);
    }

    #[test]
    fn an_unsettled_batch_answers_closed_when_dropped() {
        let slot = slot();
        let epoch = AtomicU64::new(0);
        let message = Message::new("t", vec![1u8; 10]);
        let (_, ticket) = slot
            .append(
                &message,
                message.encoded_len(),
                ReplyWanted::Ticket,
                false,
                false,
                1 << 20,
                &epoch,
            )
            .unwrap();
        drop(slot.close());
        assert!(matches!(
            ticket.unwrap().wait_blocking(),
            Err(ClientError::Closed)
        ));
    }

    #[test]
    fn closed_slot_refuses_appends_and_hands_back_what_it_held() {
        let slot = slot();
        let epoch = AtomicU64::new(0);
        let message = Message::new("t", vec![1u8; 10]);
        let length = message.encoded_len();
        append(&slot, &message, false, false, 1 << 20);
        assert_eq!(slot.close().len(), 1);
        let (single, _answer) = flume::bounded(1);
        let (error, handed_back) = slot
            .append(
                &message,
                length,
                ReplyWanted::Single(single),
                false,
                false,
                1 << 20,
                &epoch,
            )
            .unwrap_err();
        assert!(matches!(error, ClientError::Closed));
        assert!(handed_back.is_some());
    }
}
