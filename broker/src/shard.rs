//! [`Shard`]: everything one core's executor owns, and the one way work moves between
//! shards ([`Shard::run_on`]).
//!
//! # Ownership
//!
//! A shard owns its queues' commit log and indexes ([`ShardStore`]), their consumer
//! offsets ([`ConsumerOffsetStore`]), the pulls waiting on them ([`LongPoll`]) and its own
//! copy of the topic table. Shard 0 also owns what exists once per broker: the persisted
//! topic table (it decides every topic change and sends it to the others), the client
//! registry (consumer group membership), and registration with the name servers.
//!
//! # Moving work to the owner
//!
//! A request arrives on whichever shard accepted the connection. Work on a queue runs on
//! the queue's owner: [`Shard::run_on`] runs a closure there and brings its result back.
//! The closure crosses a bounded flume channel (it and its result must be `Send`, so it
//! carries owned strings and `Bytes`, never `Rc`s); the owner's [`receive_jobs`] loop
//! spawns it as a local task, so a slow job (a long poll) never holds up the next one. A
//! full channel makes the sender wait (the in-flight limit per connection bounds how much
//! can queue up), and a receive loop never sends, so two shards can never wait on each
//! other. On its own shard, `run_on` just runs the closure.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use spillway_storage::signal::Signal;
use spillway_storage::{AppendOutcome, QueueId, ShardStore};
use spillway_wire::{FrameEncoder, ShardId};

use crate::client_registry::ClientRegistry;
use crate::config::BrokerConfig;
use crate::consumer_offsets::ConsumerOffsetStore;
use crate::long_poll::LongPoll;
use crate::refusal::Refusal;
use crate::request_stats::RequestStats;
use crate::topic_table::{TopicChange, TopicTable};

/// Work sent to another shard: a closure that starts a local future there.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// Jobs that may wait in one shard's channel before senders wait.
pub const JOB_CHANNEL_CAPACITY: usize = 4096;

/// What a shard is built from (everything here is `Send`: it is made on the main thread).
pub struct ShardParts {
    /// Which shard.
    pub id: ShardId,
    /// The broker's config.
    pub config: Arc<BrokerConfig>,
    /// The topic table as loaded at start.
    pub topics: TopicTable,
    /// Senders to every shard's job channel, indexed by shard (this one's included).
    pub peers: Vec<flume::Sender<Job>>,
}

/// One shard's state. Lives on its executor; handed around as `Rc<Shard>`.
pub struct Shard {
    /// Which shard.
    pub id: ShardId,
    /// Number of shards.
    pub shard_count: u16,
    /// The broker's config.
    pub config: Arc<BrokerConfig>,
    /// This shard's messages.
    pub store: ShardStore,
    /// This shard's consumer offsets.
    pub offsets: ConsumerOffsetStore,
    /// Pulls waiting for messages on this shard's queues.
    pub long_poll: LongPoll,
    /// This shard's copy of the topic table.
    pub topics: RefCell<TopicTable>,
    /// Consumer group members; `Some` on shard 0 only.
    pub clients: Option<RefCell<ClientRegistry>>,
    /// Notified when the topic table changes (shard 0 re-registers with name servers).
    pub topics_changed: Signal,
    /// Topic changes run one at a time (shard 0).
    admin_lock: glommio::sync::Semaphore,
    peers: Vec<flume::Sender<Job>>,
    /// Encodes every frame this shard sends.
    pub encoder: FrameEncoder,
    shutting_down: Cell<bool>,
    /// Notified when shutdown starts.
    pub shutdown: Signal,
    in_flight: Cell<usize>,
    in_flight_changed: Signal,
    connections: Cell<usize>,
    next_connection_serial: Cell<u64>,
    /// When the shard started serving.
    pub started: Instant,
    /// How long produce requests take here.
    pub stats: RequestStats,
}

impl Shard {
    /// Builds the shard from its parts and its opened stores.
    pub fn new(parts: ShardParts, store: ShardStore, offsets: ConsumerOffsetStore) -> Shard {
        let config = parts.config;
        let clients =
            (parts.id.0 == 0).then(|| RefCell::new(ClientRegistry::new(config.limits.max_clients)));
        Shard {
            id: parts.id,
            shard_count: config.shard_count(),
            encoder: FrameEncoder::with_max_frame_bytes(config.limits.max_frame_bytes),
            store,
            offsets,
            long_poll: LongPoll::default(),
            topics: RefCell::new(parts.topics),
            clients,
            topics_changed: Signal::default(),
            admin_lock: glommio::sync::Semaphore::new(1),
            peers: parts.peers,
            shutting_down: Cell::new(false),
            shutdown: Signal::default(),
            in_flight: Cell::new(0),
            in_flight_changed: Signal::default(),
            connections: Cell::new(0),
            next_connection_serial: Cell::new(0),
            started: Instant::now(),
            stats: RequestStats::default(),
            config,
        }
    }

    /// Runs `work` on shard `target` and returns its result. On this shard it runs in
    /// place; otherwise it crosses to the target's executor (see the module docs).
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, target: ShardId, work: F) -> Result<T, Refusal>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(work(self.clone()).await);
        }
        let peer = self
            .peers
            .get(usize::from(target.0))
            .ok_or_else(|| Refusal::unavailable("no such shard"))?;
        let (reply, answer) = flume::bounded(1);
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                // The requester may be gone (connection closed); nothing to tell then.
                let _ = reply.send(work(shard).await);
            })
        });
        peer.send_async(job)
            .await
            .map_err(|_| Refusal::unavailable("the owning shard has stopped"))?;
        answer
            .recv_async()
            .await
            .map_err(|_| Refusal::unavailable("the owning shard dropped the request"))
    }

    /// Sends `work` to shard `target` without waiting for it (or runs it here, spawned).
    pub fn post_to<F, Fut>(self: &Rc<Self>, target: ShardId, work: F)
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if target == self.id {
            glommio::spawn_local(work(self.clone())).detach();
            return;
        }
        if let Some(peer) = self.peers.get(usize::from(target.0)) {
            let job: Job = Box::new(move |shard| Box::pin(work(shard)));
            if peer.try_send(job).is_err() {
                tracing::warn!(
                    shard = self.id.0,
                    target = target.0,
                    "could not post a job to a busy or stopped shard"
                );
            }
        }
    }

    /// Like [`Shard::post_to`] for work that must not be dropped because the target is
    /// busy: waits for room in the target's job channel (not for the work). Returns false,
    /// dropping `work`, only if the target has stopped.
    pub async fn post_to_waiting<F, Fut>(self: &Rc<Self>, target: ShardId, work: F) -> bool
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if target == self.id {
            glommio::spawn_local(work(self.clone())).detach();
            return true;
        }
        let Some(peer) = self.peers.get(usize::from(target.0)) else {
            return false;
        };
        let job: Job = Box::new(move |shard| Box::pin(work(shard)));
        peer.send_async(job).await.is_ok()
    }

    /// The shard owning `queue` of `topic`, if the topic has that queue.
    pub fn owner_of(&self, topic: &str, queue: u32) -> Result<ShardId, Refusal> {
        let topics = self.topics.borrow();
        let Some(entry) = topics.get(topic) else {
            return Err(Refusal::topic_not_found(topic));
        };
        topics
            .queue_shard(topic, queue, self.shard_count)
            .ok_or_else(|| Refusal::queue_not_found(topic, queue, entry.queue_count))
    }

    /// Appends a batch to one of this shard's queues and wakes the pulls waiting on it.
    pub async fn append_here(
        &self,
        topic: &str,
        queue: u32,
        batch: &[u8],
    ) -> Result<AppendOutcome, Refusal> {
        if self.shutting_down.get() {
            return Err(Refusal::unavailable("the broker is shutting down"));
        }
        let outcome = self.store.append(topic, QueueId(queue), batch).await?;
        self.long_poll.notify(topic, queue);
        Ok(outcome)
    }

    /// Applies a topic change decided by shard 0 to this shard's copy.
    pub fn apply_topic_change(&self, change: &TopicChange) {
        self.topics.borrow_mut().apply(change);
        if let TopicChange::Deleted(topic) = change {
            self.offsets.remove_topic(topic);
        }
        self.topics_changed.notify();
    }

    /// Shard 0: makes `change` durable in the topic file, then applies it on every shard.
    /// Topic changes run one at a time.
    pub async fn change_topics(
        self: &Rc<Self>,
        decide: impl FnOnce(&TopicTable) -> Result<TopicChange, Refusal>,
    ) -> Result<TopicChange, Refusal> {
        assert_eq!(self.id.0, 0, "topic changes are decided on shard 0");
        let _permit = self
            .admin_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Refusal::unavailable("topic administration stopped"))?;
        let change = decide(&self.topics.borrow())?;
        {
            let mut updated = self.topics.borrow().clone();
            updated.apply(&change);
            updated.save(&self.config).map_err(|error| {
                tracing::error!(%error, "could not save the topic table");
                Refusal::new(error.error_code(), error.to_string())
            })?;
        }
        for shard in 0..self.shard_count {
            let change = change.clone();
            self.run_on(ShardId(shard), move |shard| async move {
                shard.apply_topic_change(&change);
            })
            .await?;
        }
        Ok(change)
    }

    /// A new connection's serial number on this shard.
    pub fn next_connection_serial(&self) -> u64 {
        let serial = self.next_connection_serial.get();
        self.next_connection_serial.set(serial + 1);
        serial
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.connections.get()
    }

    /// Counts a connection for as long as the guard lives.
    pub fn connection_opened(self: &Rc<Self>) -> CountGuard {
        self.connections.set(self.connections.get() + 1);
        CountGuard {
            shard: self.clone(),
            counter: Counter::Connections,
        }
    }

    /// Counts a request in flight for as long as the guard lives.
    pub fn request_started(self: &Rc<Self>) -> CountGuard {
        self.in_flight.set(self.in_flight.get() + 1);
        CountGuard {
            shard: self.clone(),
            counter: Counter::InFlight,
        }
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Starts shutdown: connections stop reading, waiting pulls answer now.
    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
        self.shutdown.notify();
        self.long_poll.notify_all();
    }

    /// Resolves once no request is in flight and no connection is open on this shard.
    pub async fn drained(&self) {
        while self.in_flight.get() > 0 || self.connections.get() > 0 {
            self.in_flight_changed.changed().await;
        }
    }
}

enum Counter {
    Connections,
    InFlight,
}

/// Decrements a shard counter when dropped, however the counted task ends.
pub struct CountGuard {
    shard: Rc<Shard>,
    counter: Counter,
}

impl Drop for CountGuard {
    fn drop(&mut self) {
        let cell = match self.counter {
            Counter::Connections => &self.shard.connections,
            Counter::InFlight => &self.shard.in_flight,
        };
        cell.set(cell.get() - 1);
        self.shard.in_flight_changed.notify();
    }
}

/// Runs the jobs other shards send here, each as its own task, until every sender is gone.
pub async fn receive_jobs(shard: Rc<Shard>, jobs: flume::Receiver<Job>) {
    while let Ok(job) = jobs.recv_async().await {
        glommio::spawn_local(job(shard.clone())).detach();
    }
}
