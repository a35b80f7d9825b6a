//! [`PushConsumer`]: calls a handler with every message of a topic, in queue order, keeps
//! the group's offsets, and (in a clustering group) shares the queues with the group's
//! other members, rebalancing as they come and go.
//!
//! # Threads
//!
//! * One **rebalance thread** per consumer: heartbeats the group to the brokers, computes
//!   the consumer's queues every `rebalance_interval` (and at once on start), starts and
//!   releases queues, commits offsets every `auto_commit_interval`, and winds everything
//!   down on shutdown.
//! * One **pull thread** per owned queue: long-polls the queue from its start offset and
//!   hands what it pulls to the queue's [`ProcessQueue`], waiting while
//!   `max_in_flight_per_queue` messages are pulled and unhandled (which bounds memory).
//! * `consume_threads` **consume threads**, shared by all owned queues: a queue with
//!   messages waiting is put on a work channel once; the consume thread that takes it runs
//!   the handler on up to `consume_batch` of its messages, in order, then puts it back if
//!   more are waiting. One queue is on one thread at a time, so its messages are handled
//!   in order; queues take turns, so a busy queue does not starve the others.
//!
//! The handler never runs on a connection's thread or the rebalance thread.
//!
//! # Handler results
//!
//! [`ConsumeResult::Retry`] (or a panic in the handler) handles the same message (or
//! batch) again after `retry_pause`, up to `consume_retries` times; then the consumer logs
//! it and moves on, counting it handled for its offsets. It does not hold a queue forever
//! on one message, and it has no retry topic or dead-letter queue to put it in: a handler
//! that must not lose a message retries inside itself. The queue waits during the pause,
//! so its order is kept, and the pause ends early if the queue stops (the message then
//! counts as unfinished and is delivered again to whoever reads the queue next).
//!
//! # Offsets and commits
//!
//! A queue's committable offset is the first message not yet handled
//! ([`crate::process_queue`]). Clustering groups commit it to the brokers
//! (`CommitConsumerOffset`); broadcasting consumers keep it locally ([`LocalOffsets`]).
//! With `auto_commit_interval` set, commits happen on that interval, when a queue is
//! released, and at shutdown; without it, only when [`PushConsumer::commit`] (or a
//! [`CommitHandle`]) asks. A queue starts at the committed (or local) offset; if there is
//! none, at `start_from`, and that start is committed (or stored) at once so a later owner
//! of the queue starts from the same place instead of resolving `start_from` again.
//!
//! # Rebalance and handover
//!
//! Members find each other through the brokers ([`crate::rebalance`]): each heartbeats
//! its group on every rebalance, asks every master of the topic's route for the members,
//! and takes its share of the sorted queues by [`allocate_average`]. A consumer the
//! brokers do not list yet takes no queue. A queue that moves away is released in this
//! order: stop pulling it, wait for its running handler, commit its offset (automatic
//! commits only), drop it; [`PushConsumer::assigned_queues`] lists it until the end. A
//! queue that arrives starts from the committed offset.
//!
//! Delivery is at least once. Members rebalance independently, so the new owner of a
//! queue may read the committed offset before the old owner's final commit (or, with
//! manual commits, before the caller committed): the messages handled in between are
//! handled again by the new owner. Once every member has rebalanced with the same member
//! list, each queue has exactly one owner and nothing is delivered twice. Shutdown leaves
//! the group explicitly (a heartbeat without it), so the others rebalance at their next
//! round rather than after the brokers' client timeout.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spillway_wire::message::{ConsumeMode, ConsumerGroupMembership, PullStatus, Subscription};

use crate::client::Client;
use crate::config::{PushConsumerConfig, StartFrom};
use crate::error::{ClientError, Result};
use crate::local_offsets::LocalOffsets;
use crate::message::{MessageQueue, ReceivedMessage};
use crate::process_queue::ProcessQueue;
use crate::pull_consumer::PullConsumer;
use crate::rebalance::{allocate_average, group_members};

/// Pause before a queue's pull thread tries again after a failed pull or start-offset
/// lookup (the failure is logged).
pub const PULL_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What a handler says about a message (or batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Handled: the offset may move past it.
    Success,
    /// Not handled: hand it to the handler again after `retry_pause` (up to
    /// `consume_retries` times, then it is logged and skipped; see the module docs).
    Retry,
}

type PerMessage = dyn Fn(&ReceivedMessage) -> ConsumeResult + Send + Sync;
type PerBatch = dyn Fn(&[ReceivedMessage]) -> ConsumeResult + Send + Sync;

enum HandlerKind {
    PerMessage(Box<PerMessage>),
    PerBatch(Box<PerBatch>),
}

/// The code a push consumer runs for its messages: per message or per batch (up to
/// `consume_batch` messages of one queue, in order). It runs on the consumer's consume
/// threads, several queues at once, so it is `Sync`.
pub struct MessageHandler {
    kind: HandlerKind,
}

impl MessageHandler {
    /// A handler called once per message.
    pub fn per_message(
        handler: impl Fn(&ReceivedMessage) -> ConsumeResult + Send + Sync + 'static,
    ) -> MessageHandler {
        MessageHandler {
            kind: HandlerKind::PerMessage(Box::new(handler)),
        }
    }

    /// A handler called with consecutive messages of one queue; a retry handles the whole
    /// batch again.
    pub fn per_batch(
        handler: impl Fn(&[ReceivedMessage]) -> ConsumeResult + Send + Sync + 'static,
    ) -> MessageHandler {
        MessageHandler {
            kind: HandlerKind::PerBatch(Box::new(handler)),
        }
    }
}

impl fmt::Debug for MessageHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            HandlerKind::PerMessage(_) => "MessageHandler::PerMessage",
            HandlerKind::PerBatch(_) => "MessageHandler::PerBatch",
        })
    }
}

/// Counters of a push consumer since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushConsumerStats {
    /// Messages the handler handled ([`ConsumeResult::Success`]).
    pub messages_handled: u64,
    /// Handler calls that asked for a retry or panicked.
    pub handler_retries: u64,
    /// Messages skipped after `consume_retries` retries.
    pub messages_given_up: u64,
    /// Rebalances that changed the consumer's queues.
    pub assignment_changes: u64,
    /// Offset commits that failed (logged; a later commit tries again).
    pub commit_failures: u64,
    /// Messages pulled and not yet handled, over the queues it owns now.
    pub messages_in_flight: u64,
}

#[derive(Default)]
struct Counters {
    messages_handled: AtomicU64,
    handler_retries: AtomicU64,
    messages_given_up: AtomicU64,
    assignment_changes: AtomicU64,
    commit_failures: AtomicU64,
}

/// A queue the consumer owns, and its pull thread.
struct Owned {
    queue: Arc<ProcessQueue>,
    puller: Option<JoinHandle<()>>,
}

/// What the rebalance, pull and consume threads share.
struct Shared {
    client: Client,
    pull: PullConsumer,
    config: PushConsumerConfig,
    handler: MessageHandler,
    owned: Mutex<BTreeMap<MessageQueue, Owned>>,
    /// Broadcasting only.
    local_offsets: Option<LocalOffsets>,
    /// Commits one at a time, so two commits of one queue never cross on the way.
    commit_lock: Mutex<()>,
    /// Where queues with messages waiting go; the strong sender is the consumer's, so
    /// the consume threads end once it is dropped.
    work: flume::WeakSender<Arc<ProcessQueue>>,
    counters: Counters,
}

/// Messages for the rebalance thread.
enum Control {
    Shutdown,
}

/// The consumer's threads, until shutdown.
struct Threads {
    control: flume::Sender<Control>,
    work: flume::Sender<Arc<ProcessQueue>>,
    rebalance: JoinHandle<Result<()>>,
    consume: Vec<JoinHandle<()>>,
}

thread_local! {
    /// On a consume thread: the consumer it belongs to (its `Shared`'s address).
    static CONSUME_THREAD_OF: Cell<usize> = const { Cell::new(0) };
}

/// The client id and consumer group of every push consumer of this process that has not
/// finished shutting down.
static RUNNING: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// A place in [`RUNNING`], given back when dropped.
struct Registration {
    key: (String, String),
}

impl Registration {
    /// Refuses a second push consumer of one group with one client id in this process:
    /// the brokers would count them as one member and both would take every queue. (A
    /// `ClientConfig` keeps its client id when cloned.)
    fn new(client_id: &str, consumer_group: &str) -> Result<Registration> {
        let key = (client_id.to_owned(), consumer_group.to_owned());
        let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
        if !running.insert(key.clone()) {
            return Err(ClientError::InvalidConfig {
                reason: format!(
                    "client id {client_id} already has a push consumer in group \
                     {consumer_group} in this process: give each member its own client_id"
                ),
            });
        }
        Ok(Registration { key })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

/// A push consumer (see the module docs). Shut it down with [`PushConsumer::shutdown`];
/// dropping it does the same.
pub struct PushConsumer {
    shared: Arc<Shared>,
    threads: Mutex<Option<Threads>>,
}

impl fmt::Debug for PushConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushConsumer")
            .field("client_id", &self.shared.client.client_id())
            .field("consumer_group", &self.shared.config.consumer_group)
            .field("topic", &self.shared.config.topic)
            .field("mode", &self.shared.config.mode)
            .finish()
    }
}

/// Commits a push consumer's offsets when asked (see [`PushConsumer::commit`]); cheap to
/// clone and usable from the handler. It does not keep the consumer alive.
#[derive(Clone, Debug)]
pub struct CommitHandle {
    shared: Weak<Shared>,
}

impl CommitHandle {
    /// Commits, for every queue the consumer owns, the offset after every message handled
    /// so far. [`ClientError::Closed`] once the consumer is gone.
    pub fn commit(&self) -> Result<()> {
        self.shared
            .upgrade()
            .ok_or(ClientError::Closed)?
            .commit_all()
    }
}

impl PushConsumer {
    /// Starts a push consumer on a new client made from `config.client`: joins the group,
    /// and starts the threads; the first rebalance runs at once, on the rebalance thread.
    /// Fails if the configuration is invalid or no name server knows the topic.
    pub fn start(config: PushConsumerConfig, handler: MessageHandler) -> Result<PushConsumer> {
        let client = Client::new(config.client.clone())?;
        PushConsumer::start_on(&client, config, handler)
    }

    /// [`PushConsumer::start`] on a running client (sharing its connections). The client's
    /// id is the member's id: one process can run only one push consumer per group and
    /// client id, so members in one process need clients with distinct `client_id`s.
    pub fn start_on(
        client: &Client,
        config: PushConsumerConfig,
        handler: MessageHandler,
    ) -> Result<PushConsumer> {
        config.validate()?;
        let pull = PullConsumer::with_client(client, config.consumer_group.clone())?;
        let local_offsets = match config.mode {
            ConsumeMode::Broadcasting => {
                Some(LocalOffsets::open(config.offset_store_path.clone())?)
            }
            ConsumeMode::Clustering => None,
        };
        // Fails fast on an unknown topic, and lets heartbeats reach the topic's masters.
        client.topic_route(&config.topic)?;
        let membership = ConsumerGroupMembership {
            consumer_group: config.consumer_group.clone(),
            consume_mode: config.mode,
            subscriptions: vec![Subscription {
                topic: config.topic.clone(),
                tag_expression: config.tag_expression.clone(),
            }],
        };
        let registration = Registration::new(client.client_id(), &config.consumer_group)?;
        client.join_consumer_group(membership);
        let (work, work_receiver) = flume::unbounded();
        let (control, control_receiver) = flume::unbounded();
        let consume_threads = config.consume_threads;
        let shared = Arc::new(Shared {
            client: client.clone(),
            pull,
            handler,
            owned: Mutex::new(BTreeMap::new()),
            local_offsets,
            commit_lock: Mutex::new(()),
            work: work.downgrade(),
            counters: Counters::default(),
            config,
        });
        let group = shared.config.consumer_group.clone();
        let spawn_failed = |error: std::io::Error| {
            shared.client.leave_consumer_group(&group);
            ClientError::io("(push consumer thread)", error)
        };
        let mut consume = Vec::with_capacity(consume_threads);
        for index in 0..consume_threads {
            let spawned = std::thread::Builder::new()
                .name(format!("spillway-consume {group} {index}"))
                .spawn({
                    let shared = shared.clone();
                    let work = work_receiver.clone();
                    move || run_consume_thread(shared, work)
                });
            // On failure the threads already started end with the work channel.
            consume.push(spawned.map_err(spawn_failed)?);
        }
        let rebalance = std::thread::Builder::new()
            .name(format!("spillway-rebalance {group}"))
            .spawn({
                let shared = shared.clone();
                move || {
                    let result = run_rebalance_thread(shared, control_receiver);
                    // The group is left: another consumer of it may start.
                    drop(registration);
                    result
                }
            })
            .map_err(spawn_failed)?;
        Ok(PushConsumer {
            shared,
            threads: Mutex::new(Some(Threads {
                control,
                work,
                rebalance,
                consume,
            })),
        })
    }

    /// The client it runs on (its client id is its member id).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Its configuration.
    pub fn config(&self) -> &PushConsumerConfig {
        &self.shared.config
    }

    /// The queues it owns now, sorted: from the rebalance that took each until the
    /// release that gave it up is complete (its handlers finished and, with automatic
    /// commits, its offset committed).
    pub fn assigned_queues(&self) -> Vec<MessageQueue> {
        self.shared.owned().keys().cloned().collect()
    }

    /// Commits, for every queue it owns, the offset after every message handled so far
    /// (broadcasting: stores it locally, and in the offsets file if configured). With
    /// manual commits it is the only way handled messages get committed; with automatic
    /// ones, it commits now rather than at the next interval.
    pub fn commit(&self) -> Result<()> {
        self.shared.commit_all()
    }

    /// A handle that commits like [`PushConsumer::commit`], for the handler or another
    /// thread.
    pub fn commit_handle(&self) -> CommitHandle {
        CommitHandle {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Its counters.
    pub fn stats(&self) -> PushConsumerStats {
        let counters = &self.shared.counters;
        PushConsumerStats {
            messages_handled: counters.messages_handled.load(Ordering::Relaxed),
            handler_retries: counters.handler_retries.load(Ordering::Relaxed),
            messages_given_up: counters.messages_given_up.load(Ordering::Relaxed),
            assignment_changes: counters.assignment_changes.load(Ordering::Relaxed),
            commit_failures: counters.commit_failures.load(Ordering::Relaxed),
            messages_in_flight: self
                .shared
                .owned()
                .values()
                .map(|owned| owned.queue.in_flight() as u64)
                .sum(),
        }
    }

    /// Stops pulling, lets the running handlers finish, commits the final offsets
    /// (automatic commits only), leaves the group (one heartbeat without it, so the other
    /// members rebalance at their next round) and ends the threads. Returns the first
    /// failed final commit, if any. Calling it again does nothing.
    ///
    /// Called from this consumer's own handler, it cannot wait for the handlers (it would
    /// wait for itself): it starts the same steps and returns; they complete once the
    /// handler returns.
    pub fn shutdown(&self) -> Result<()> {
        let taken = self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(threads) = taken else {
            return Ok(());
        };
        let _ = threads.control.send(Control::Shutdown);
        let own_thread = CONSUME_THREAD_OF.get() == Arc::as_ptr(&self.shared) as usize;
        if own_thread {
            // The rebalance thread waits for this handler; the consume threads end once
            // the work channel's sender (dropped here) is gone and the channel is empty.
            return Ok(());
        }
        let result = threads.rebalance.join().unwrap_or_else(|_| {
            tracing::error!(
                consumer_group = %self.shared.config.consumer_group,
                "the rebalance thread panicked"
            );
            Err(ClientError::Closed)
        });
        drop(threads.work);
        for thread in threads.consume {
            // A handler's panic is caught on the thread; a join error is a bug, logged.
            if thread.join().is_err() {
                tracing::error!("a consume thread panicked");
            }
        }
        result
    }
}

impl Drop for PushConsumer {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::warn!(%error, "push consumer shut down with an error");
        }
    }
}

/// How a message (or batch) ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handled {
    /// Handled, or given up on: the offset moves past it.
    Done,
    /// The queue stopped first: it stays unfinished.
    Stopped,
}

impl Shared {
    fn owned(&self) -> MutexGuard<'_, BTreeMap<MessageQueue, Owned>> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn automatic_commits(&self) -> bool {
        self.config.auto_commit_interval.is_some()
    }

    /// Puts `queue` on the work channel (nothing once the consumer is shutting down).
    fn schedule(&self, queue: &Arc<ProcessQueue>) {
        if let Some(work) = self.work.upgrade() {
            let _ = work.send(queue.clone());
        }
    }

    // ---- rebalance thread ----

    /// One rebalance: heartbeat, compute the queues this consumer should own, release
    /// and start queues to match. Keeps the current queues if the route or the members
    /// cannot be had.
    fn rebalance(self: &Arc<Self>) {
        if let Err(error) = self.client.send_heartbeats() {
            tracing::debug!(%error, "heartbeat failed");
        }
        let route = match self.client.topic_route(&self.config.topic) {
            Ok(route) => route,
            Err(error) => {
                tracing::warn!(%error, topic = %self.config.topic, "no route: keeping the current queues");
                return;
            }
        };
        let queues = route.queues();
        let target: BTreeSet<MessageQueue> = match self.config.mode {
            ConsumeMode::Broadcasting => queues.into_iter().collect(),
            ConsumeMode::Clustering => {
                let members = futures_lite::future::block_on(group_members(
                    &self.client.inner,
                    &route,
                    &self.config.consumer_group,
                ));
                let members = match members {
                    Ok(members) => members,
                    Err(error) => {
                        tracing::warn!(%error, consumer_group = %self.config.consumer_group, "no member list: keeping the current queues");
                        return;
                    }
                };
                let client_id = self.client.client_id();
                if !members.iter().any(|member| member == client_id) {
                    tracing::debug!(
                        client_id,
                        ?members,
                        "the brokers do not list this consumer yet: it takes no queue"
                    );
                }
                allocate_average(&queues, &members, client_id)
                    .into_iter()
                    .collect()
            }
        };
        self.apply(&target);
    }

    /// Releases the owned queues not in `target`, then starts those of `target` not owned.
    fn apply(self: &Arc<Self>, target: &BTreeSet<MessageQueue>) {
        let (leaving, arriving) = {
            let mut owned = self.owned();
            let leaving: Vec<(Arc<ProcessQueue>, Option<JoinHandle<()>>)> = owned
                .iter_mut()
                .filter(|(queue, _)| !target.contains(*queue))
                .map(|(_, owned)| (owned.queue.clone(), owned.puller.take()))
                .collect();
            let arriving: Vec<MessageQueue> = target
                .iter()
                .filter(|queue| !owned.contains_key(*queue))
                .cloned()
                .collect();
            (leaving, arriving)
        };
        if leaving.is_empty() && arriving.is_empty() {
            return;
        }
        self.counters
            .assignment_changes
            .fetch_add(1, Ordering::Relaxed);
        if !leaving.is_empty() {
            let released = self.release(leaving);
            if let Err(error) = released {
                tracing::warn!(%error, "final commit of released queues failed");
            }
        }
        for queue in arriving {
            self.start_queue(queue);
        }
        tracing::info!(
            consumer_group = %self.config.consumer_group,
            client_id = self.client.client_id(),
            queues = ?self.owned().keys().map(ToString::to_string).collect::<Vec<_>>(),
            "rebalanced"
        );
    }

    /// Releases queues: stop them all, wait for their handlers and pull threads, commit
    /// their offsets (automatic commits only), then forget them.
    fn release(&self, leaving: Vec<(Arc<ProcessQueue>, Option<JoinHandle<()>>)>) -> Result<()> {
        for (queue, _) in &leaving {
            queue.stop();
        }
        let mut queues = Vec::with_capacity(leaving.len());
        for (queue, puller) in leaving {
            queue.wait_idle();
            if let Some(puller) = puller {
                if puller.join().is_err() {
                    tracing::error!(queue = %queue.queue, "a pull thread panicked");
                }
            }
            queues.push(queue);
        }
        let committed = if self.automatic_commits() {
            self.commit(&queues)
        } else {
            Ok(())
        };
        let mut owned = self.owned();
        for queue in &queues {
            owned.remove(&queue.queue);
        }
        committed
    }

    /// Starts owning `queue`: its state and its pull thread (which finds the start).
    fn start_queue(self: &Arc<Self>, queue: MessageQueue) {
        let process_queue = Arc::new(ProcessQueue::new(queue.clone()));
        let spawned = std::thread::Builder::new()
            .name(format!("spillway-pull {queue}"))
            .spawn({
                let shared = self.clone();
                let process_queue = process_queue.clone();
                move || shared.run_puller(&process_queue)
            });
        match spawned {
            Ok(puller) => {
                self.owned().insert(
                    queue,
                    Owned {
                        queue: process_queue,
                        puller: Some(puller),
                    },
                );
            }
            Err(error) => {
                tracing::error!(%error, %queue, "cannot start a pull thread; trying at the next rebalance");
            }
        }
    }

    /// Commits every owned queue's committable offset.
    fn commit_all(&self) -> Result<()> {
        let queues: Vec<Arc<ProcessQueue>> = self
            .owned()
            .values()
            .map(|owned| owned.queue.clone())
            .collect();
        self.commit(&queues)
    }

    /// Commits the committable offsets of `queues` that moved since their last commit,
    /// all at once; returns the first failure (the others are still committed).
    fn commit(&self, queues: &[Arc<ProcessQueue>]) -> Result<()> {
        let _one_at_a_time = self
            .commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let moved: Vec<(&Arc<ProcessQueue>, u64)> = queues
            .iter()
            .filter_map(|queue| {
                let offset = queue.committable()?;
                (queue.committed() != Some(offset)).then_some((queue, offset))
            })
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        if let Some(local_offsets) = &self.local_offsets {
            for (queue, offset) in &moved {
                local_offsets.set(&queue.queue, *offset);
            }
            if let Err(error) = local_offsets.persist() {
                self.counters
                    .commit_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "storing local offsets failed");
                return Err(error);
            }
            for (queue, offset) in moved {
                queue.set_committed(offset);
            }
            return Ok(());
        }
        let commits: Vec<_> = moved
            .iter()
            .map(|(queue, offset)| self.pull.commit_offset_async(&queue.queue, *offset))
            .collect();
        let results = futures_lite::future::block_on(join_all(commits));
        let mut first_error = None;
        for ((queue, offset), result) in moved.into_iter().zip(results) {
            match result {
                Ok(()) => queue.set_committed(offset),
                Err(error) => {
                    self.counters
                        .commit_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, queue = %queue.queue, offset, "offset commit failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Shutdown: release every queue, leave the group.
    fn wind_down(&self) -> Result<()> {
        let leaving: Vec<(Arc<ProcessQueue>, Option<JoinHandle<()>>)> = self
            .owned()
            .values_mut()
            .map(|owned| (owned.queue.clone(), owned.puller.take()))
            .collect();
        let released = self.release(leaving);
        self.client
            .leave_consumer_group(&self.config.consumer_group);
        if let Err(error) = self.client.send_heartbeats() {
            tracing::debug!(%error, "the heartbeat leaving the group failed; the brokers drop this client when it closes or times out");
        }
        released
    }

    // ---- pull threads ----

    /// A queue's pull thread: find the start, then pull until the queue stops.
    fn run_puller(&self, queue: &Arc<ProcessQueue>) {
        let Some(start) = self.start_offset(queue) else {
            return;
        };
        queue.start_at(start);
        let mut offset = start;
        let max_in_flight = self.config.max_in_flight_per_queue;
        let pull_batch = self.config.pull_batch as usize;
        while let Some(room) = queue.wait_for_room(max_in_flight) {
            // `room` is at most max_in_flight_per_queue, which validate bounds.
            let max_messages = u32::try_from(room.min(pull_batch)).unwrap_or(u32::MAX);
            let pull = self.pull.pull_async(
                &queue.queue,
                offset,
                max_messages,
                self.config.pull_wait,
                &self.config.tag_expression,
            );
            let Some(pulled) = queue.stop_signal().until_raised(pull) else {
                return;
            };
            let pulled = match pulled {
                Ok(pulled) => pulled,
                Err(error) => {
                    tracing::warn!(%error, queue = %queue.queue, offset, "pull failed; trying again");
                    if queue.stop_signal().wait(PULL_RETRY_PAUSE) {
                        return;
                    }
                    continue;
                }
            };
            match pulled.status {
                PullStatus::Found => {
                    if pulled.next_offset < offset {
                        tracing::warn!(queue = %queue.queue, offset, next_offset = pulled.next_offset, "a pull went backwards");
                    }
                    offset = pulled.next_offset;
                    if queue.deliver(pulled.messages, offset) {
                        self.schedule(queue);
                    }
                }
                PullStatus::NoNewMessages => {}
                PullStatus::OffsetTooSmall | PullStatus::OffsetTooLarge => {
                    tracing::warn!(
                        queue = %queue.queue,
                        offset,
                        next_offset = pulled.next_offset,
                        status = ?pulled.status,
                        "the offset is outside the queue; continuing where the broker says"
                    );
                    offset = pulled.next_offset;
                    queue.skip_to(offset);
                }
            }
        }
    }

    /// Where `queue` starts, trying again after failures; `None` if it stops first.
    fn start_offset(&self, queue: &ProcessQueue) -> Option<u64> {
        loop {
            match queue
                .stop_signal()
                .until_raised(self.resolve_start(&queue.queue))?
            {
                Ok((offset, committed)) => {
                    if committed {
                        queue.set_committed(offset);
                    }
                    tracing::debug!(queue = %queue.queue, offset, "starting");
                    return Some(offset);
                }
                Err(error) => {
                    tracing::warn!(%error, queue = %queue.queue, "cannot find where to start; trying again");
                    if queue.stop_signal().wait(PULL_RETRY_PAUSE) {
                        return None;
                    }
                }
            }
        }
    }

    /// The committed (clustering) or local (broadcasting) offset of `queue`, else
    /// `start_from` resolved and recorded at once; with whether it is committed.
    async fn resolve_start(&self, queue: &MessageQueue) -> Result<(u64, bool)> {
        let stored = match &self.local_offsets {
            Some(local_offsets) => local_offsets.get(queue),
            None => self.pull.committed_offset_async(queue).await?,
        };
        if let Some(offset) = stored {
            return Ok((offset, true));
        }
        let offset = match self.config.start_from {
            StartFrom::Earliest => self.pull.queue_offsets_async(queue).await?.0,
            StartFrom::Latest => self.pull.queue_offsets_async(queue).await?.1,
            StartFrom::Timestamp(timestamp_ms) => {
                self.pull
                    .offset_for_timestamp_async(queue, timestamp_ms)
                    .await?
            }
        };
        match &self.local_offsets {
            // Persisted with the next commit.
            Some(local_offsets) => local_offsets.set(queue, offset),
            None => {
                if let Err(error) = self.pull.commit_offset_async(queue, offset).await {
                    tracing::warn!(%error, %queue, offset, "recording the group's start offset failed");
                    return Ok((offset, false));
                }
            }
        }
        Ok((offset, self.local_offsets.is_none()))
    }

    // ---- consume threads ----

    /// One turn of a consume thread on `queue`: up to `consume_batch` messages.
    fn consume(&self, queue: &Arc<ProcessQueue>) {
        let Some(messages) = queue.take(self.config.consume_batch) else {
            return;
        };
        match &self.handler.kind {
            HandlerKind::PerMessage(handler) => {
                for (index, message) in messages.iter().enumerate() {
                    let handled = self.handle(queue, message.offset, 1, || handler(message));
                    if handled == Handled::Stopped {
                        break;
                    }
                    queue.handled(1, messages.get(index + 1).map(|next| next.offset));
                }
            }
            HandlerKind::PerBatch(handler) => {
                let first = messages.first().map_or(0, |message| message.offset);
                let handled = self.handle(queue, first, messages.len(), || handler(&messages));
                if handled == Handled::Done {
                    queue.handled(messages.len(), None);
                }
            }
        }
        if queue.release() {
            self.schedule(queue);
        }
    }

    /// Runs `attempt` (the handler on `count` messages from `offset`) until it succeeds,
    /// the retries run out, or the queue stops (see the module docs).
    fn handle(
        &self,
        queue: &ProcessQueue,
        offset: u64,
        count: usize,
        attempt: impl Fn() -> ConsumeResult,
    ) -> Handled {
        let counters = &self.counters;
        let mut retries = 0;
        loop {
            if queue.is_stopped() {
                return Handled::Stopped;
            }
            let result = panic::catch_unwind(AssertUnwindSafe(&attempt)).unwrap_or_else(|_| {
                tracing::warn!(queue = %queue.queue, offset, "the handler panicked");
                ConsumeResult::Retry
            });
            match result {
                ConsumeResult::Success => {
                    counters
                        .messages_handled
                        .fetch_add(count as u64, Ordering::Relaxed);
                    return Handled::Done;
                }
                ConsumeResult::Retry if retries >= self.config.consume_retries => {
                    counters
                        .messages_given_up
                        .fetch_add(count as u64, Ordering::Relaxed);
                    tracing::warn!(
                        queue = %queue.queue,
                        offset,
                        count,
                        retries,
                        "the handler did not handle these messages; skipping them"
                    );
                    return Handled::Done;
                }
                ConsumeResult::Retry => {
                    retries += 1;
                    counters.handler_retries.fetch_add(1, Ordering::Relaxed);
                    if queue.stop_signal().wait(self.config.retry_pause) {
                        return Handled::Stopped;
                    }
                }
            }
        }
    }
}

/// The rebalance thread: rebalances every `rebalance_interval` (the first at once),
/// commits every `auto_commit_interval`, and winds down on shutdown.
fn run_rebalance_thread(shared: Arc<Shared>, control: flume::Receiver<Control>) -> Result<()> {
    let rebalance_interval = shared.config.rebalance_interval;
    let commit_interval = shared.config.auto_commit_interval;
    let mut next_rebalance = Instant::now();
    let mut next_commit = commit_interval.map(|interval| Instant::now() + interval);
    loop {
        if Instant::now() >= next_rebalance {
            shared.rebalance();
            next_rebalance = Instant::now() + rebalance_interval;
        }
        if let (Some(at), Some(interval)) = (next_commit, commit_interval) {
            if Instant::now() >= at {
                // A failure is logged and counted; the next commit tries again.
                let _ = shared.commit_all();
                next_commit = Some(Instant::now() + interval);
            }
        }
        let wake = next_commit.map_or(next_rebalance, |at| at.min(next_rebalance));
        match control.recv_deadline(wake) {
            Ok(Control::Shutdown) | Err(flume::RecvTimeoutError::Disconnected) => break,
            Err(flume::RecvTimeoutError::Timeout) => {}
        }
    }
    shared.wind_down()
}

/// A consume thread: takes queues off the work channel until it closes.
fn run_consume_thread(shared: Arc<Shared>, work: flume::Receiver<Arc<ProcessQueue>>) {
    CONSUME_THREAD_OF.set(Arc::as_ptr(&shared) as usize);
    while let Ok(queue) = work.recv() {
        shared.consume(&queue);
    }
}

/// Polls every future until all are done; their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_all_keeps_the_order_of_its_futures() {
        let (sender, receiver) = flume::bounded::<u32>(1);
        let waiting = async move { receiver.recv_async().await.unwrap_or(0) };
        let ready = async { 2 };
        let futures: Vec<Pin<Box<dyn Future<Output = u32> + Send>>> =
            vec![Box::pin(waiting), Box::pin(ready)];
        let joined = std::thread::spawn(move || futures_lite::future::block_on(join_all(futures)));
        sender.send(1).unwrap();
        assert_eq!(joined.join().unwrap(), [1, 2]);
    }
}
