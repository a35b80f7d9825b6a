//! [`Producer`]: sends messages with automatic batching, from blocking code or any async
//! runtime.
//!
//! # How a message travels
//!
//! 1. On the caller's thread: the message is checked, its bytes are taken from the memory
//!    budget (`max_pending_bytes`), a queue is picked (round-robin over every writable
//!    queue of the topic, skipping brokers that just failed, or by the hash of a key) and
//!    the message is encoded into that queue's open batch ([`crate::batch`]). The topic's
//!    route comes from the client's cache.
//! 2. On the producer's sender thread ([`crate::sender`]): a broker shard is *ready* once
//!    one of its queues has a full batch, a batch older than `linger`, a blocked caller, a
//!    retry due, or a flush; the sender then takes what every queue of that shard holds
//!    and sends it as one multi-part produce request on a connection bound to the shard,
//!    up to `max_in_flight_requests_per_broker` requests in flight per broker shard. While
//!    requests are in flight, messages keep gathering, so batches grow with the load (as
//!    with Nagle's algorithm).
//! 3. The answer arrives on the connection's reader thread, which hands it to the sender
//!    thread; each message's reply gets its own offset (the part's first offset plus its
//!    index), or the error once retries are exhausted.
//!
//! # When a message must wait: the parked queue
//!
//! A message whose topic has no cached route yet, or that finds the budget exhausted, is
//! *parked*: appended to one FIFO queue that is drained, in order, as routes arrive (a
//! short-lived thread asks the name servers) and as acknowledgements free memory. While
//! anything is parked every new message parks behind it, so no message overtakes an
//! earlier one (keyed order holds across the wait). Draining happens on the sender thread
//! and on callers' threads that send meanwhile; a blocked [`Producer::send`] or
//! [`Producer::send_oneway`] is handed its turn (with its budget) and encodes on its own
//! thread. So async sends are *eager*: a message is sent whether or not its future is
//! polled (or dropped), and a caller that starts a million sends and awaits them one by one
//! waits for nothing but acknowledgements. Blocking sends are the back-pressure: they
//! return only once their message is in a batch (or acknowledged, for `send`).
//!
//! # Ordering
//!
//! Messages sent with the same key go to the same queue, and their order is kept even
//! across retries: a batch holding a keyed message is sent only when nothing else of its
//! queue is in flight, nothing else of the queue is sent while it is in flight, and it is
//! retried on the same queue (after `retry_backoff` × attempt). The key → queue mapping
//! is the key's hash over the topic's writable queues, so it changes if the route does.
//! Round-robin messages promise less: those of one caller thread that land in the same
//! queue are stored in send order as long as nothing fails (a parked message is in its
//! batch before anything sent after it may skip the parked queue), but a failed batch is
//! retried on another broker group, after later ones.
//!
//! # Blocking and async
//!
//! Every async method returns a future built on flume's runtime-agnostic `recv_async`, so
//! it runs under tokio, async-std or `futures_lite::future::block_on`; the blocking
//! methods are the same steps with blocking waits. [`Producer::send`] does not linger: its
//! caller has nothing more to add while it waits, so its batch is sent at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;

use spillway_storage::record::MAX_TOPIC_BYTES;

use crate::batch::{BrokerHealth, ReplyWanted, SingleReply, Slot, Ticket};
use crate::budget::Budget;
use crate::client::{Client, ClientInner};
use crate::config::ProducerConfig;
use crate::error::{ClientError, Result};
use crate::message::{Message, SendResult};
use crate::request_timings::RequestTimings;
use crate::route::TopicRoute;
use crate::sender::{Event, Sender};

/// Counters of what a producer did, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Produce requests sent.
    pub produce_requests: u64,
    /// Parts (one queue's batch each) in those requests.
    pub produce_parts: u64,
    /// Payload bytes in those requests (retries included).
    pub payload_bytes: u64,
    /// Messages acknowledged by a broker.
    pub messages_acknowledged: u64,
    /// Messages that failed for good.
    pub messages_failed: u64,
    /// Batches sent again after a retriable failure.
    pub retries: u64,
    /// Messages that had to wait in the parked queue (for a route or for memory).
    pub messages_parked: u64,
    /// Encoded bytes of messages accepted and not yet acknowledged or failed.
    pub pending_bytes: usize,
}

/// The producer's counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) produce_requests: AtomicU64,
    pub(crate) produce_parts: AtomicU64,
    pub(crate) payload_bytes: AtomicU64,
    pub(crate) messages_acknowledged: AtomicU64,
    pub(crate) messages_failed: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) messages_parked: AtomicU64,
}

/// Where a message should go.
#[derive(Clone, Copy, Debug)]
enum Target {
    RoundRobin,
    /// The key's hash.
    Key(u32),
}

/// A message on its way into a batch, with what its send needs.
pub(crate) struct Outgoing {
    message: Message,
    length: usize,
    target: Target,
    /// Its caller waits for the outcome (not a one-way send).
    wants_reply: bool,
    /// Its own reply channel, once it waited in the parked queue (async sends).
    single: Option<SingleReply>,
    urgent: bool,
    /// Its bytes are taken from the budget.
    budget_held: bool,
}

/// How far an attempt to put a message into a batch got.
enum Attempt {
    /// In a batch; the ticket if a reply was wanted.
    Done(Option<Ticket>),
    Failed(ClientError),
    /// The topic's route is not cached.
    NeedRoute(Outgoing),
    /// The budget is exhausted.
    NeedBudget(Outgoing),
}

/// How the caller of an async send hears the outcome.
enum Submitted {
    /// One-way: it does not.
    Nothing,
    /// From its batch's outcome.
    Ticket(Ticket),
    /// On its own channel (it waited in the parked queue).
    Single(flume::Receiver<Result<SendResult>>),
}

/// A blocked blocking caller's turn: its message back with its budget taken, or why not.
type Grant = flume::Sender<Result<Outgoing>>;

/// A message waiting in the parked queue.
pub(crate) struct Parked {
    outgoing: Outgoing,
    /// For a blocking caller: where to hand back its turn (it then encodes the message on
    /// its own thread). Async messages are encoded by whoever drains.
    grant: Option<Grant>,
}

/// The parked queue (see the module docs).
#[derive(Default)]
pub(crate) struct ParkedQueue {
    entries: VecDeque<Parked>,
    /// Topics whose route a fetch thread is asking for.
    fetching: HashSet<Arc<str>>,
    /// Entries ever taken off the queue, in order (a flush waits for a count).
    pub(crate) popped: u64,
    /// Entries ever put on the queue.
    pub(crate) pushed: u64,
    /// The producer stopped: nothing parks any more.
    pub(crate) closed: bool,
}

/// A topic as the producer sends to it: its writable queues, in route order.
pub(crate) struct TopicState {
    route: Arc<TopicRoute>,
    generation: u64,
    pub(crate) slots: Vec<Arc<Slot>>,
    next: AtomicUsize,
}

impl TopicState {
    /// The next queue round-robin (by the shared counter), skipping paused brokers while
    /// any other is available.
    fn round_robin(&self) -> &Arc<Slot> {
        self.round_robin_from(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The queue round-robin position `start` names, skipping paused brokers while any
    /// other is available.
    fn round_robin_from(&self, start: usize) -> &Arc<Slot> {
        let count = self.slots.len();
        (0..count)
            .map(|step| &self.slots[(start + step) % count])
            .find(|slot| !slot.broker.is_paused())
            .unwrap_or(&self.slots[start % count])
    }

    /// The queue for `target`, advancing `rotation` for round-robin.
    fn pick(&self, target: Target, rotation: &mut usize) -> &Arc<Slot> {
        match target {
            Target::RoundRobin => {
                *rotation = rotation.wrapping_add(1);
                self.round_robin_from(*rotation)
            }
            Target::Key(hash) => self.keyed(hash),
        }
    }

    /// The queue of a key.
    fn keyed(&self, hash: u32) -> &Arc<Slot> {
        &self.slots[hash as usize % self.slots.len()]
    }

    /// Where a round-robin batch that failed on `failed` goes next: a queue of another,
    /// unpaused broker group if there is one, else of another group, else the same queue.
    pub(crate) fn retry_target(&self, failed: &Slot) -> Arc<Slot> {
        let count = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let candidates = || (0..count).map(|step| &self.slots[(start + step) % count]);
        let other_group = |slot: &&Arc<Slot>| !Arc::ptr_eq(&slot.broker, &failed.broker);
        candidates()
            .filter(other_group)
            .find(|slot| !slot.broker.is_paused())
            .or_else(|| candidates().find(other_group))
            .cloned()
            .unwrap_or_else(|| {
                candidates()
                    .find(|slot| slot.id == failed.id)
                    .cloned()
                    .unwrap_or_else(|| self.slots[start % count].clone())
            })
    }
}

/// Topic states a thread keeps per producer, so a send reads no shared lock and bumps no
/// shared reference count: on two cores, every write to a line another core also writes
/// costs a cache-line transfer, which was a third of a 100-byte send's time.
const THREAD_CACHED_TOPICS: usize = 16;

/// One cached topic state, with this thread's round-robin position for it.
struct CachedTopic {
    producer: u64,
    topic: Arc<str>,
    state: Arc<TopicState>,
    rotation: usize,
}

thread_local! {
    static TOPIC_CACHE: std::cell::RefCell<Vec<CachedTopic>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Distinguishes producers in the thread-local caches (an address could be reused).
static NEXT_PRODUCER_ID: AtomicU64 = AtomicU64::new(1);

/// Every slot and broker the producer has used; closed once the producer stops.
#[derive(Default)]
pub(crate) struct Registry {
    slots: HashMap<(Arc<str>, Arc<str>, u32), Arc<Slot>>,
    brokers: HashMap<Arc<str>, Arc<BrokerHealth>>,
    pub(crate) closed: bool,
}

impl Registry {
    /// Every slot, for the sender's closing pass.
    pub(crate) fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.slots.values().cloned().collect()
    }
}

/// What the producer's handles and its sender thread share.
pub(crate) struct Shared {
    /// Unique among producers of the process.
    id: u64,
    pub(crate) client: Arc<ClientInner>,
    pub(crate) config: ProducerConfig,
    pub(crate) budget: Budget,
    pub(crate) events: flume::Sender<Event>,
    /// A `Wake` is queued and not yet handled: further wakes are not needed.
    pub(crate) wake_pending: AtomicBool,
    pub(crate) closed: AtomicBool,
    /// Grows with every flush; batches remember the epoch they opened in.
    pub(crate) epoch: AtomicU64,
    topics: RwLock<HashMap<Arc<str>, Arc<TopicState>>>,
    pub(crate) registry: Mutex<Registry>,
    parked: Mutex<ParkedQueue>,
    /// `parked.entries.len()`, readable without the lock.
    parked_count: AtomicUsize,
    pub(crate) counters: Counters,
    /// Written by the sender thread once per answered request.
    request_timings: Mutex<RequestTimings>,
}

impl Shared {
    pub(crate) fn request_timings(&self) -> MutexGuard<'_, RequestTimings> {
        self.request_timings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn parked(&self) -> MutexGuard<'_, ParkedQueue> {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether anything is parked.
    pub(crate) fn has_parked(&self) -> bool {
        self.parked_count.load(Ordering::SeqCst) > 0
    }

    /// Wakes the sender thread, unless a wake is already queued.
    pub(crate) fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::SeqCst) {
            let _ = self.events.send(Event::Wake);
        }
    }

    /// The producer's view of `topic` from the cached route: `Ok(None)` if the route is
    /// not cached yet. Rebuilt when the route changed.
    pub(crate) fn topic_state(&self, topic: &Arc<str>) -> Result<Option<Arc<TopicState>>> {
        let generation = self.client.routes.generation();
        let current = self
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned();
        if let Some(state) = &current {
            if state.generation == generation {
                return Ok(Some(state.clone()));
            }
        }
        let Some(route) = self.client.routes.cached(topic) else {
            return Ok(None);
        };
        let slots = match &current {
            Some(state) if Arc::ptr_eq(&state.route, &route) => state.slots.clone(),
            _ => self.slots_for(topic, &route)?,
        };
        if slots.is_empty() {
            return Err(ClientError::BrokerUnavailable {
                topic: topic.to_string(),
                broker_name: String::new(),
                reason: "no broker group of the topic has a live master",
            });
        }
        let state = Arc::new(TopicState {
            route,
            generation,
            slots,
            next: AtomicUsize::new(rand::random::<u16>().into()),
        });
        self.topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(topic.clone(), state.clone());
        Ok(Some(state))
    }

    /// The slots of every writable queue of `route` (creating and announcing new ones).
    fn slots_for(&self, topic: &Arc<str>, route: &TopicRoute) -> Result<Vec<Arc<Slot>>> {
        let mut registry = self.registry();
        if registry.closed {
            return Err(ClientError::Closed);
        }
        let mut slots = Vec::new();
        for broker in &route.brokers {
            if broker.master_address().is_none() {
                continue;
            }
            let broker_name: Arc<str> = Arc::from(broker.broker_name.as_str());
            let health = registry
                .brokers
                .entry(broker_name.clone())
                .or_insert_with(|| Arc::new(BrokerHealth::new(broker_name.clone())))
                .clone();
            for queue_id in 0..broker.queue_count {
                let key = (topic.clone(), broker_name.clone(), queue_id);
                let next_id = registry.slots.len();
                let slot = registry
                    .slots
                    .entry(key)
                    .or_insert_with(|| {
                        let shard = broker.shard_for(queue_id);
                        let slot = Arc::new(Slot::new(
                            next_id,
                            topic.clone(),
                            health.clone(),
                            queue_id,
                            shard,
                        ));
                        let _ = self.events.send(Event::NewSlot(slot.clone()));
                        slot
                    })
                    .clone();
                slots.push(slot);
            }
        }
        Ok(slots)
    }

    /// Checks a message and prepares it for sending.
    fn outgoing(
        &self,
        message: Message,
        target: Target,
        wants_reply: bool,
        urgent: bool,
    ) -> Result<Outgoing> {
        let topic_bytes = message.topic().len();
        if topic_bytes == 0 || topic_bytes > MAX_TOPIC_BYTES {
            return Err(ClientError::InvalidMessage {
                reason: format!(
                    "topic name of {topic_bytes} bytes; 1 to {MAX_TOPIC_BYTES} allowed"
                ),
            });
        }
        let length = message.encoded_len();
        if length > self.config.max_message_bytes {
            return Err(ClientError::InvalidMessage {
                reason: format!(
                    "message of {length} bytes encoded exceeds max_message_bytes ({})",
                    self.config.max_message_bytes
                ),
            });
        }
        Ok(Outgoing {
            message,
            length,
            target,
            wants_reply,
            single: None,
            urgent,
            budget_held: false,
        })
    }

    /// Tries to put the message into a batch now, on this thread: needs the topic's route
    /// cached and room in the budget (unless already held). The topic state comes from
    /// this thread's cache ([`THREAD_CACHED_TOPICS`]).
    fn try_enqueue(&self, mut outgoing: Outgoing) -> Attempt {
        TOPIC_CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let generation = self.client.routes.generation();
            let found = cache.iter().position(|cached| {
                cached.producer == self.id
                    && *cached.topic == *outgoing.message.topic()
                    && cached.state.generation == generation
            });
            let index = match found {
                Some(index) => index,
                None => {
                    let topic = outgoing.message.topic_arc().clone();
                    let state = match self.topic_state(&topic) {
                        Ok(Some(state)) => state,
                        Ok(None) => return Attempt::NeedRoute(outgoing),
                        Err(error) => {
                            self.give_back(&outgoing);
                            return Attempt::Failed(error);
                        }
                    };
                    cache.retain(|cached| !(cached.producer == self.id && cached.topic == topic));
                    if cache.len() >= THREAD_CACHED_TOPICS {
                        cache.remove(0);
                    }
                    cache.push(CachedTopic {
                        producer: self.id,
                        topic,
                        state,
                        rotation: rand::random::<u16>().into(),
                    });
                    cache.len() - 1
                }
            };
            if !outgoing.budget_held {
                if !self.budget.try_acquire(outgoing.length) {
                    return Attempt::NeedBudget(outgoing);
                }
                outgoing.budget_held = true;
            }
            let cached = &mut cache[index];
            let slot = cached.state.pick(outgoing.target, &mut cached.rotation);
            match self.append(slot, outgoing) {
                Ok(ticket) => Attempt::Done(ticket),
                Err(error) => Attempt::Failed(error),
            }
        })
    }

    /// Encodes a message whose budget is held into `slot`'s batch; returns its ticket if
    /// it wants a reply and has no channel of its own. On failure the budget is given back,
    /// its own channel (if any) is answered, and the error returned.
    fn append(&self, slot: &Slot, outgoing: Outgoing) -> Result<Option<Ticket>> {
        let reply = match outgoing.single {
            Some(single) => ReplyWanted::Single(single),
            None if outgoing.wants_reply => ReplyWanted::Ticket,
            None => ReplyWanted::Nothing,
        };
        let appended = slot.append(
            &outgoing.message,
            outgoing.length,
            reply,
            matches!(outgoing.target, Target::Key(_)),
            outgoing.urgent,
            self.config.batch_bytes,
            &self.epoch,
        );
        match appended {
            Ok((wake, ticket)) => {
                if wake {
                    self.wake();
                }
                Ok(ticket)
            }
            Err((error, single)) => {
                self.budget.release(outgoing.length);
                if let Some(single) = single {
                    let _ = single.send(Err(error.clone()));
                }
                Err(error)
            }
        }
    }

    /// Gives back the budget a message holds, if any.
    fn give_back(&self, outgoing: &Outgoing) {
        if outgoing.budget_held {
            self.budget.release(outgoing.length);
        }
    }

    /// Answers a parked message that cannot be sent.
    fn fail_parked(&self, parked: Parked, error: ClientError) {
        self.give_back(&parked.outgoing);
        self.counters
            .messages_failed
            .fetch_add(1, Ordering::Relaxed);
        match (parked.grant, parked.outgoing.single) {
            (Some(grant), _) => drop(grant.send(Err(error))),
            (None, Some(single)) => drop(single.send(Err(error))),
            (None, None) => tracing::warn!(%error, "a one-way message failed while parked"),
        }
    }

    /// Puts a message at the end of the parked queue, then helps drain it (the route or
    /// the room it waits for may have come meanwhile). An async message that wants a reply
    /// gets its own channel here; its receiving end is returned.
    fn park(self: &Arc<Self>, mut parked: Parked) -> Option<flume::Receiver<Result<SendResult>>> {
        let mut answer = None;
        if parked.grant.is_none() && parked.outgoing.wants_reply && parked.outgoing.single.is_none()
        {
            let (single, receiver) = flume::bounded(1);
            parked.outgoing.single = Some(single);
            answer = Some(receiver);
        }
        {
            let mut queue = self.parked();
            if queue.closed {
                drop(queue);
                self.fail_parked(parked, ClientError::Closed);
                return answer;
            }
            queue.entries.push_back(parked);
            queue.pushed += 1;
            self.parked_count
                .store(queue.entries.len(), Ordering::SeqCst);
        }
        self.counters
            .messages_parked
            .fetch_add(1, Ordering::Relaxed);
        self.drain_parked();
        answer
    }

    /// Moves parked messages into batches, in order, while their routes are known and the
    /// budget has room; starts route lookups for the first one still without a route.
    /// Called by the sender thread after it frees memory or learns a route, and by callers
    /// that park.
    pub(crate) fn drain_parked(self: &Arc<Self>) {
        if !self.has_parked() {
            return;
        }
        let mut queue = self.parked();
        while let Some(front) = queue.entries.front_mut() {
            let topic = front.outgoing.message.topic_arc().clone();
            let state = match self.topic_state(&topic) {
                Ok(Some(state)) => state,
                Ok(None) => {
                    if queue.fetching.insert(topic.clone()) {
                        self.fetch_route(topic);
                    }
                    break;
                }
                Err(error) => {
                    let parked = self.pop_parked(&mut queue);
                    self.fail_parked(parked, error);
                    continue;
                }
            };
            if !front.outgoing.budget_held {
                if !self.budget.try_acquire(front.outgoing.length) {
                    break;
                }
                front.outgoing.budget_held = true;
            }
            let parked = self.pop_parked(&mut queue);
            match parked.grant {
                Some(grant) => {
                    if let Err(flume::SendError(Ok(outgoing))) = grant.send(Ok(parked.outgoing)) {
                        // The blocked caller is gone (it cannot be, but give back).
                        self.give_back(&outgoing);
                    }
                }
                None => {
                    let slot = match parked.outgoing.target {
                        Target::RoundRobin => state.round_robin(),
                        Target::Key(hash) => state.keyed(hash),
                    };
                    // A failure is answered on the message's own channel by `append`.
                    let _ = self.append(slot, parked.outgoing);
                }
            }
        }
        // Only now, with the drained messages in their batches, may a caller that sees
        // nothing parked go straight to a batch: had the count dropped at each pop, a
        // message sent meanwhile could land in a queue ahead of one popped but not yet
        // appended (seen by `verify` as a producer's messages out of order in a queue).
        self.parked_count
            .store(queue.entries.len(), Ordering::SeqCst);
    }

    fn pop_parked(&self, queue: &mut ParkedQueue) -> Parked {
        let Some(parked) = queue.entries.pop_front() else {
            unreachable!("the caller saw a front entry");
        };
        queue.popped += 1;
        parked
    }

    /// Asks the name servers for `topic`'s route on a short-lived thread (the sender thread
    /// and async callers never wait on the network); the answer comes back as an event.
    fn fetch_route(&self, topic: Arc<str>) {
        let client = self.client.clone();
        let events = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name("spillway-route".into())
            .spawn({
                let topic = topic.clone();
                move || {
                    let result = futures_lite::future::block_on(client.route(&topic)).map(drop);
                    let _ = events.send(Event::RouteFetched { topic, result });
                }
            });
        if let Err(error) = spawned {
            let _ = self.events.send(Event::RouteFetched {
                topic,
                result: Err(ClientError::io("(route thread)", error)),
            });
        }
    }

    /// The sender thread learned how the route lookup for `topic` went: on failure, every
    /// message parked for the topic fails with it.
    pub(crate) fn route_fetched(self: &Arc<Self>, topic: &Arc<str>, result: Result<()>) {
        let failed: Vec<Parked> = {
            let mut queue = self.parked();
            queue.fetching.remove(topic);
            match &result {
                Ok(()) => Vec::new(),
                Err(_) => {
                    let (failed, kept): (VecDeque<Parked>, VecDeque<Parked>) =
                        std::mem::take(&mut queue.entries)
                            .into_iter()
                            .partition(|parked| parked.outgoing.message.topic_arc() == topic);
                    queue.entries = kept;
                    queue.popped += failed.len() as u64;
                    self.parked_count
                        .store(queue.entries.len(), Ordering::SeqCst);
                    failed.into()
                }
            }
        };
        if let Err(error) = result {
            for parked in failed {
                self.fail_parked(parked, error.clone());
            }
        }
        self.drain_parked();
    }

    /// Refuses further parking and fails what is still parked (the producer stopped).
    pub(crate) fn close_parked(&self) {
        let left: Vec<Parked> = {
            let mut queue = self.parked();
            queue.closed = true;
            let left: Vec<Parked> = queue.entries.drain(..).collect();
            queue.popped += left.len() as u64;
            self.parked_count.store(0, Ordering::SeqCst);
            left
        };
        for parked in left {
            self.fail_parked(parked, ClientError::Closed);
        }
    }

    /// Sends a message without waiting: now if possible, else parked (eager: it is sent
    /// whether or not anyone waits for its reply). Returns how its caller hears the outcome.
    fn submit(self: &Arc<Self>, outgoing: Outgoing) -> Result<Submitted> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ClientError::Closed);
        }
        let outgoing = if self.has_parked() {
            outgoing
        } else {
            match self.try_enqueue(outgoing) {
                Attempt::Done(Some(ticket)) => return Ok(Submitted::Ticket(ticket)),
                Attempt::Done(None) => return Ok(Submitted::Nothing),
                Attempt::Failed(error) => return Err(error),
                Attempt::NeedRoute(outgoing) | Attempt::NeedBudget(outgoing) => outgoing,
            }
        };
        let answer = self.park(Parked {
            outgoing,
            grant: None,
        });
        Ok(answer.map_or(Submitted::Nothing, Submitted::Single))
    }

    /// Sends a message, blocking until it is in a batch: the caller encodes it on its own
    /// thread, after waiting its turn in the parked queue if it must. Returns its ticket if
    /// it wants a reply.
    fn submit_blocking(self: &Arc<Self>, mut outgoing: Outgoing) -> Result<Option<Ticket>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(ClientError::Closed);
        }
        let mut may_go_first = !self.has_parked();
        loop {
            if may_go_first {
                match self.try_enqueue(outgoing) {
                    Attempt::Done(ticket) => return Ok(ticket),
                    Attempt::Failed(error) => return Err(error),
                    Attempt::NeedRoute(waiting) => {
                        outgoing = waiting;
                        if !self.has_parked() {
                            // Nothing to overtake: look the route up on this thread.
                            let topic = outgoing.message.topic_arc().clone();
                            if let Err(error) =
                                futures_lite::future::block_on(self.client.route(&topic))
                            {
                                self.give_back(&outgoing);
                                return Err(error);
                            }
                            continue;
                        }
                    }
                    Attempt::NeedBudget(waiting) => outgoing = waiting,
                }
            }
            let (grant, turn) = flume::bounded(1);
            self.park(Parked {
                outgoing,
                grant: Some(grant),
            });
            outgoing = turn.recv().map_err(|_| ClientError::Closed)??;
            // Our turn, with the budget held: go now, before anything parked later.
            may_go_first = true;
        }
    }

    /// Starts closing: no new sends; the sender sends what it holds, then stops and
    /// answers `done`.
    fn begin_close(&self, done: Option<flume::Sender<()>>) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        let (reply, _) = flume::bounded(1);
        self.events
            .send(Event::Close(done.unwrap_or(reply)))
            .is_ok()
    }
}

/// Sends messages (see the module docs). Cheap to clone; every clone drives the same
/// batches. Dropping the last clone closes the producer in the background (what it holds
/// is still sent); call [`Producer::close`] to wait for that.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("producer_group", &self.handle.shared.config.producer_group)
            .finish()
    }
}

struct Handle {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.begin_close(None);
        self.shared
            .client
            .remove_producer_group(&self.shared.config.producer_group);
    }
}

fn key_hash(key: &[u8]) -> u32 {
    crc32fast::hash(key)
}

impl Producer {
    /// Starts a producer on a new client made from `config.client`.
    pub fn start(config: ProducerConfig) -> Result<Producer> {
        let client = Client::new(config.client.clone())?;
        Producer::start_on(&client, config)
    }

    /// Starts a producer on a running client, sharing its connections and routes
    /// (`config.client` is not used).
    pub fn start_on(client: &Client, config: ProducerConfig) -> Result<Producer> {
        config.validate_for(client.config())?;
        let (events, received) = flume::unbounded();
        let shared = Arc::new(Shared {
            id: NEXT_PRODUCER_ID.fetch_add(1, Ordering::Relaxed),
            client: client.inner.clone(),
            budget: Budget::new(config.max_pending_bytes),
            events,
            wake_pending: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            topics: RwLock::new(HashMap::new()),
            registry: Mutex::new(Registry::default()),
            parked: Mutex::new(ParkedQueue::default()),
            parked_count: AtomicUsize::new(0),
            counters: Counters::default(),
            request_timings: Mutex::new(RequestTimings::default()),
            config,
        });
        let sender = Sender::new(shared.clone(), received);
        let thread = std::thread::Builder::new()
            .name(format!(
                "spillway-producer {}",
                shared.config.producer_group
            ))
            .spawn(move || sender.run())
            .map_err(|error| ClientError::io("(producer thread)", error))?;
        client
            .inner
            .add_producer_group(&shared.config.producer_group);
        Ok(Producer {
            handle: Arc::new(Handle {
                shared,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The client it runs on.
    pub fn client(&self) -> Client {
        Client {
            inner: self.handle.shared.client.clone(),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    fn send_blocking(&self, message: Message, target: Target) -> Result<SendResult> {
        let outgoing = self.shared().outgoing(message, target, true, true)?;
        match self.shared().submit_blocking(outgoing)? {
            Some(ticket) => ticket.wait_blocking(),
            None => unreachable!("a send that wants a reply gets a ticket"),
        }
    }

    fn send_future(
        &self,
        message: Message,
        target: Target,
    ) -> impl Future<Output = Result<SendResult>> + Send + 'static {
        // Sent here, on the caller's thread (encoded now, or parked): the future only
        // waits for the answer.
        let submitted = self
            .shared()
            .outgoing(message, target, true, false)
            .and_then(|outgoing| self.shared().submit(outgoing));
        async move {
            match submitted? {
                Submitted::Ticket(ticket) => ticket.wait().await,
                Submitted::Single(answer) => {
                    answer.recv_async().await.map_err(|_| ClientError::Closed)?
                }
                Submitted::Nothing => unreachable!("a send that wants a reply hears back"),
            }
        }
    }

    /// Sends `message` round-robin and waits for its acknowledgement (blocking; no linger).
    pub fn send(&self, message: Message) -> Result<SendResult> {
        self.send_blocking(message, Target::RoundRobin)
    }

    /// Sends `message` to the queue of `key` (same key, same queue, order kept) and waits
    /// for its acknowledgement (blocking; no linger).
    pub fn send_with_key(&self, message: Message, key: &[u8]) -> Result<SendResult> {
        self.send_blocking(message, Target::Key(key_hash(key)))
    }

    /// Sends `message` round-robin; the future resolves with its acknowledgement. The
    /// message is sent whether or not the future is polled: encoded before this returns,
    /// or parked until the topic's route is known or memory frees (see the module docs).
    pub fn send_async(
        &self,
        message: Message,
    ) -> impl Future<Output = Result<SendResult>> + Send + 'static {
        self.send_future(message, Target::RoundRobin)
    }

    /// Sends `message` to the queue of `key`; the future resolves with its
    /// acknowledgement. Messages of one key keep the order of these calls.
    pub fn send_async_with_key(
        &self,
        message: Message,
        key: &[u8],
    ) -> impl Future<Output = Result<SendResult>> + Send + 'static {
        self.send_future(message, Target::Key(key_hash(key)))
    }

    /// Queues `message` round-robin without waiting for (or hearing of) its
    /// acknowledgement; failures are logged and counted in [`ProducerStats`]. Blocks until
    /// the message is in a batch: only for the route of a new topic or for memory.
    pub fn send_oneway(&self, message: Message) -> Result<()> {
        let outgoing = self
            .shared()
            .outgoing(message, Target::RoundRobin, false, false)?;
        self.shared().submit_blocking(outgoing).map(drop)
    }

    /// Waits until every message accepted before this call is acknowledged or has failed
    /// (sending lingering batches at once).
    pub fn flush(&self) -> Result<()> {
        futures_lite::future::block_on(self.flush_async())
    }

    /// [`Producer::flush`] as a future.
    pub fn flush_async(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let (reply, done) = flume::bounded(1);
        let sent = !self.shared().closed.load(Ordering::SeqCst)
            && self.shared().events.send(Event::Flush(reply)).is_ok();
        async move {
            if !sent {
                return Err(ClientError::Closed);
            }
            done.recv_async().await.map_err(|_| ClientError::Closed)
        }
    }

    /// Flushes, then stops the producer (every clone): later sends fail with
    /// [`ClientError::Closed`]. Waits for the sender thread to finish.
    pub fn close(&self) -> Result<()> {
        let (reply, done) = flume::bounded(1);
        if self.shared().begin_close(Some(reply)) {
            // The sender answers once it has sent (or failed) everything it held.
            let _ = done.recv();
        }
        let thread = self
            .handle
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!("the producer's sender thread panicked");
            }
        }
        Ok(())
    }

    /// Where its answered requests spent their time so far, per stage (see
    /// [`RequestTimings`]).
    pub fn request_timings(&self) -> RequestTimings {
        self.shared().request_timings().clone()
    }

    /// What it did so far.
    pub fn stats(&self) -> ProducerStats {
        let counters = &self.shared().counters;
        ProducerStats {
            produce_requests: counters.produce_requests.load(Ordering::Relaxed),
            produce_parts: counters.produce_parts.load(Ordering::Relaxed),
            payload_bytes: counters.payload_bytes.load(Ordering::Relaxed),
            messages_acknowledged: counters.messages_acknowledged.load(Ordering::Relaxed),
            messages_failed: counters.messages_failed.load(Ordering::Relaxed),
            retries: counters.retries.load(Ordering::Relaxed),
            messages_parked: counters.messages_parked.load(Ordering::Relaxed),
            pending_bytes: self.shared().budget.used(),
        }
    }
}
