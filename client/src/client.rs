//! [`Client`]: what the producers, consumers and admin handles of one process share: the
//! configuration, one connection per broker and name server ([`ConnectionPool`]), the
//! route cache ([`RouteTable`]), the group memberships announced in heartbeats, and the
//! maintenance thread that keeps routes fresh and heartbeats going.
//!
//! A `Client` is a cheap handle (`Clone`); the shared state goes away with the last handle
//! (and every producer or consumer made from it), which closes the connections and stops
//! the maintenance thread. The maintenance thread only holds a weak reference, so it never
//! keeps a client alive.
//!
//! Heartbeats are the hook group consumption builds on: a client announces its producer
//! groups and consumer group memberships ([`Client::join_consumer_group`]) to every master
//! it knows, every `heartbeat_interval`, and brokers derive group membership from them.
//! A heartbeat replaces the client's group list on the broker, so a client that has
//! announced anything keeps heartbeating even with nothing left to announce: that is how
//! leaving its last group reaches the brokers. A [`crate::PushConsumer`] also heartbeats
//! on every rebalance (every second by default), and once more, without its group, when
//! it shuts down.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spillway_wire::message::{
    ClientHeartbeatRequest, ClientHeartbeatResponse, ConsumerGroupMembership,
};
use spillway_wire::{Frame, WireHeader};

use crate::config::ClientConfig;
use crate::connection::{decode_response, ConnectionPool, ConnectionSettings, Reply};
use crate::error::{ClientError, Result};
use crate::route::{RouteTable, TopicRoute};

/// Shortest time between two refreshes of one topic's route asked for after failures: a
/// burst of failures costs one lookup.
pub const MIN_ROUTE_REFRESH_GAP: Duration = Duration::from_millis(100);

/// A handle on a running client (see the module docs).
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.inner.config.client_id)
            .field("name_servers", &self.inner.config.name_servers)
            .finish()
    }
}

/// The groups a client announces in its heartbeats.
#[derive(Default)]
struct Membership {
    /// Producer group → how many producers of this client use it.
    producer_groups: BTreeMap<String, usize>,
    consumer_groups: BTreeMap<String, ConsumerGroupMembership>,
    /// Whether any heartbeat was built yet: once a client has announced a group it keeps
    /// heartbeating, even with no group left, so that brokers hear that it left (a
    /// heartbeat replaces the client's group list).
    announced: bool,
}

/// What the maintenance thread is asked to do besides its periodic work.
enum Control {
    RefreshRoute(String),
    Heartbeat,
}

/// The state behind every [`Client`] handle.
pub(crate) struct ClientInner {
    pub(crate) config: ClientConfig,
    pub(crate) pool: ConnectionPool,
    pub(crate) routes: RouteTable,
    membership: Mutex<Membership>,
    control: flume::Sender<Control>,
}

impl Client {
    /// Starts a client: checks the configuration and starts the maintenance thread.
    /// Connects to nothing yet: connections open on first use.
    pub fn new(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let (control, requests) = flume::unbounded();
        let inner = Arc::new(ClientInner {
            pool: ConnectionPool::new(ConnectionSettings {
                connect_timeout: config.connect_timeout,
                max_frame_bytes: config.max_frame_bytes,
                max_in_flight_requests: config.max_in_flight_requests_per_connection,
            }),
            routes: RouteTable::new(config.name_servers.clone()),
            membership: Mutex::new(Membership::default()),
            control,
            config,
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("spillway-client-maintenance".into())
            .spawn(move || run_maintenance(weak, requests))
            .map_err(|error| ClientError::io("(maintenance thread)", error))?;
        Ok(Client { inner })
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The id it announces in heartbeats.
    pub fn client_id(&self) -> &str {
        &self.inner.config.client_id
    }

    /// The route of `topic`: the cached one, else asked of the name servers (blocking).
    pub fn topic_route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        futures_lite::future::block_on(self.inner.route(topic))
    }

    /// [`Client::topic_route`] as a future.
    pub fn topic_route_async(
        &self,
        topic: &str,
    ) -> impl std::future::Future<Output = Result<Arc<TopicRoute>>> + Send + 'static {
        let inner = self.inner.clone();
        let topic = topic.to_owned();
        async move { inner.route(&topic).await }
    }

    /// Asks the name servers for `topic`'s route now, replacing the cached one (blocking).
    pub fn refresh_topic_route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        futures_lite::future::block_on(self.inner.refresh_route(topic))
    }

    /// Announces membership of a consumer group in this client's heartbeats (replacing an
    /// earlier membership of the same group) and heartbeats soon.
    pub fn join_consumer_group(&self, membership: ConsumerGroupMembership) {
        self.inner
            .membership()
            .consumer_groups
            .insert(membership.consumer_group.clone(), membership);
        let _ = self.inner.control.send(Control::Heartbeat);
    }

    /// Stops announcing `consumer_group`: the next heartbeat (sent soon, or at once with
    /// [`Client::send_heartbeats`]) no longer names it, and brokers drop the client from
    /// the group when they receive it.
    pub fn leave_consumer_group(&self, consumer_group: &str) {
        self.inner
            .membership()
            .consumer_groups
            .remove(consumer_group);
        let _ = self.inner.control.send(Control::Heartbeat);
    }

    /// Sends a heartbeat to every master in the cached routes now, and waits for the
    /// answers; returns the first failure, if any (the others are still sent).
    pub fn send_heartbeats(&self) -> Result<()> {
        self.inner.send_heartbeats()
    }
}

impl ClientInner {
    fn membership(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached route of `topic`, else a fresh one.
    pub(crate) async fn route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        match self.routes.cached(topic) {
            Some(route) => Ok(route),
            None => self.refresh_route(topic).await,
        }
    }

    /// A fresh route of `topic`.
    pub(crate) async fn refresh_route(&self, topic: &str) -> Result<Arc<TopicRoute>> {
        self.routes
            .fetch(&self.pool, self.config.request_timeout, topic)
            .await
    }

    /// Asks the maintenance thread to refresh `topic`'s route soon (does not wait).
    pub(crate) fn request_route_refresh(&self, topic: &str) {
        let _ = self.control.send(Control::RefreshRoute(topic.to_owned()));
    }

    /// Sends `request` to `address` and waits (as a future) for the answer frame, with the
    /// configured timeout plus `extra_wait` (a long poll's own wait).
    pub(crate) async fn call<H: WireHeader + Sync>(
        &self,
        address: &str,
        request: &H,
        extra_wait: Duration,
    ) -> Result<Frame> {
        self.call_bound(address, None, request, extra_wait).await
    }

    /// [`ClientInner::call`] on the connection bound to broker shard `shard` (unbound if
    /// `None`): for requests about one queue, sent to the shard that owns it.
    pub(crate) async fn call_bound<H: WireHeader + Sync>(
        &self,
        address: &str,
        shard: Option<u16>,
        request: &H,
        extra_wait: Duration,
    ) -> Result<Frame> {
        let connection = self.pool.get_bound(address, shard);
        connection
            .call(
                request,
                Bytes::new(),
                self.config.request_timeout + extra_wait,
            )
            .await
    }

    /// Registers a producer group for heartbeats (counted: two producers of one group
    /// need two removals).
    pub(crate) fn add_producer_group(&self, producer_group: &str) {
        *self
            .membership()
            .producer_groups
            .entry(producer_group.to_owned())
            .or_default() += 1;
    }

    /// Undoes one [`ClientInner::add_producer_group`].
    pub(crate) fn remove_producer_group(&self, producer_group: &str) {
        let mut membership = self.membership();
        if let Some(count) = membership.producer_groups.get_mut(producer_group) {
            *count -= 1;
            if *count == 0 {
                membership.producer_groups.remove(producer_group);
            }
        }
    }

    /// The heartbeat this client sends, if it has anything to announce or has announced
    /// something before (so that leaving its last group reaches the brokers).
    fn heartbeat(&self) -> Option<ClientHeartbeatRequest> {
        let mut membership = self.membership();
        if membership.producer_groups.is_empty()
            && membership.consumer_groups.is_empty()
            && !membership.announced
        {
            return None;
        }
        membership.announced = true;
        Some(ClientHeartbeatRequest {
            client_id: self.config.client_id.clone(),
            producer_groups: membership.producer_groups.keys().cloned().collect(),
            consumer_groups: membership.consumer_groups.values().cloned().collect(),
        })
    }

    /// Heartbeats every known master, all at once, then waits for every answer.
    fn send_heartbeats(&self) -> Result<()> {
        let Some(heartbeat) = self.heartbeat() else {
            return Ok(());
        };
        let mut answers = Vec::new();
        let mut first_error = None;
        for address in self.routes.master_addresses() {
            let connection = self.pool.get(&address);
            let permit = futures_lite::future::block_on(connection.permit());
            let (reply, answer) = flume::bounded(1);
            match connection.send(
                &heartbeat,
                Vec::new(),
                self.config.request_timeout,
                Reply::Oneshot(reply),
                permit,
            ) {
                Ok(()) => answers.push((address, answer)),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        for (address, answer) in answers {
            let result = answer
                .recv()
                .map_err(|_| ClientError::Closed)
                .and_then(|frame| frame)
                .and_then(|frame| {
                    decode_response::<ClientHeartbeatResponse>(&frame, &address, "heartbeat")
                });
            if let Err(error) = result {
                tracing::debug!(%address, %error, "heartbeat failed");
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The maintenance thread: refreshes every cached route every `route_refresh_interval`
/// and a topic's route when asked (at most once per [`MIN_ROUTE_REFRESH_GAP`]), heartbeats
/// every `heartbeat_interval`; stops when the client goes.
fn run_maintenance(client: Weak<ClientInner>, requests: flume::Receiver<Control>) {
    let (route_interval, heartbeat_interval) = match client.upgrade() {
        Some(inner) => (
            inner.config.route_refresh_interval,
            inner.config.heartbeat_interval,
        ),
        None => return,
    };
    let mut next_routes = Instant::now() + route_interval;
    let mut next_heartbeat = Instant::now() + heartbeat_interval;
    let mut last_refresh: HashMap<String, Instant> = HashMap::new();
    loop {
        let request = requests.recv_deadline(next_routes.min(next_heartbeat));
        let Some(inner) = client.upgrade() else {
            return;
        };
        match request {
            Ok(Control::RefreshRoute(topic)) => {
                let now = Instant::now();
                let recent = last_refresh
                    .get(&topic)
                    .is_some_and(|at| now.duration_since(*at) < MIN_ROUTE_REFRESH_GAP);
                if !recent {
                    last_refresh.insert(topic.clone(), now);
                    if let Err(error) = futures_lite::future::block_on(inner.refresh_route(&topic))
                    {
                        tracing::debug!(%topic, %error, "route refresh failed");
                    }
                }
            }
            Ok(Control::Heartbeat) => {
                if let Err(error) = inner.send_heartbeats() {
                    tracing::debug!(%error, "heartbeat failed");
                }
            }
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        if now >= next_routes {
            for topic in inner.routes.topics() {
                if let Err(error) = futures_lite::future::block_on(inner.refresh_route(&topic)) {
                    tracing::debug!(%topic, %error, "periodic route refresh failed");
                }
            }
            last_refresh.retain(|_, at| now.duration_since(*at) < MIN_ROUTE_REFRESH_GAP);
            next_routes = Instant::now() + route_interval;
        }
        if now >= next_heartbeat {
            if let Err(error) = inner.send_heartbeats() {
                tracing::debug!(%error, "heartbeat failed");
            }
            next_heartbeat = Instant::now() + heartbeat_interval;
        }
    }
}
