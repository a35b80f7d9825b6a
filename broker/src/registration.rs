//! [`Registration`]: keeping every name server informed of this broker and its topics, from
//! shard 0, for as long as the broker runs.
//!
//! # What it does
//!
//! [`Registration::run`] starts one independent loop per name server (a glommio task each,
//! so a slow or dead name server never delays the others). Each loop:
//!
//! 1. connects (bounded by `request_timeout`) and sends a full `RegisterBroker` (identity,
//!    shard count, the topics and their version from the [`TopicSource`]);
//! 2. then every `heartbeat_interval` sends a small `BrokerHeartbeat` carrying the topics
//!    version it last registered;
//! 3. registers again, on the same connection, when the heartbeat's answer says
//!    `registration_needed` (the name server restarted or forgot us), when the source's
//!    topics version differs from the one registered, or at once when
//!    [`Registration::topics_changed`] is called (a topic was created or deleted);
//! 4. on any failure (cannot connect, timeout, refused, connection closed) drops the
//!    connection, waits [`RegistrationSettings::retry_pause`] and starts again at 1. A
//!    fresh connection always starts with a registration, so a name server that came back
//!    empty is refilled without waiting for a heartbeat to find out.
//!
//! It never gives up and never panics on anything a name server does: a broker keeps
//! serving with no name server reachable (clients with cached routes still reach it). An
//! outage is logged once when it starts (`warn`) and once when it ends (`info`); the failed
//! attempts in between are `debug`.
//!
//! [`Registration::stop`] ends every loop promptly, even mid-request; then
//! [`unregister_all`] tells every name server, concurrently and best effort, that the
//! broker is leaving.
//!
//! # Why a signal and not a channel
//!
//! Everything here runs on one executor thread, and what the loops need to know is "has
//! something changed since I last looked", not a queue of events: five topic changes during
//! one registration need one more registration, not five. `Signal` is a generation counter
//! with wakers, so a loop remembers the generation its last registration reflected and a
//! change can never be lost between a check and an await.
//!
//! This module knows nothing about where topics live: it asks its [`TopicSource`] each time
//! it builds a registration, and holds no state about other shards.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use spillway_storage::signal::Signal;

use futures_lite::future;
use spillway_wire::message::{
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, RegisterBrokerRequest, RegisterBrokerResponse,
    TopicConfig, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use spillway_wire::{BrokerId, Opcode};

use crate::config::BrokerConfig;
use crate::rpc_client::{within, RpcConnection, RpcError, RpcOperation};

/// Longest pause between two attempts to reach a name server that is failing. The pause is
/// the heartbeat interval when that is shorter: a failing name server is never tried less
/// often than a healthy one is heartbeated, and never more than once per
/// `request_timeout`-bounded attempt plus this pause.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Who this broker is, as registered with the name servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerIdentity {
    /// The cluster it belongs to.
    pub cluster: String,
    /// Its broker group.
    pub broker_name: String,
    /// Its id in the group (0 = master).
    pub broker_id: BrokerId,
    /// Where clients reach it: the advertised `host:port`.
    pub address: String,
    /// How many shards it runs.
    pub shard_count: u16,
}

impl BrokerIdentity {
    /// The identity a broker with `config` registers, reachable at `address` (the
    /// advertised endpoint, known only once the listeners are bound when the config's
    /// listen port is 0).
    pub fn from_config(config: &BrokerConfig, address: String) -> BrokerIdentity {
        BrokerIdentity {
            cluster: config.cluster.clone(),
            broker_name: config.broker_name.clone(),
            broker_id: BrokerId(config.broker_id),
            address,
            shard_count: config.shard_count(),
        }
    }
}

/// Which name servers to keep informed, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationSettings {
    /// Every name server, `host:port` (DNS names are resolved at each connect, blocking
    /// shard 0 briefly: see [`crate::rpc_client`]).
    pub name_servers: Vec<String>,
    /// Pause between heartbeats to a healthy name server. Not zero.
    pub heartbeat_interval: Duration,
    /// Longest a connect, or one request and its response, may take. Not zero.
    pub request_timeout: Duration,
}

impl RegistrationSettings {
    /// The settings of a broker with `config` (`name_servers`, `heartbeat_interval_ms`,
    /// `name_server_timeout_ms`).
    pub fn from_config(config: &BrokerConfig) -> RegistrationSettings {
        RegistrationSettings {
            name_servers: config
                .name_servers
                .iter()
                .map(ToString::to_string)
                .collect(),
            heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
            request_timeout: Duration::from_millis(config.name_server_timeout_ms),
        }
    }

    /// Pause after a failed attempt before the next: the heartbeat interval, at most
    /// [`MAX_RETRY_PAUSE`].
    pub fn retry_pause(&self) -> Duration {
        self.heartbeat_interval.min(MAX_RETRY_PAUSE)
    }
}

/// Where the topics to register come from: asked each time a registration is built, on
/// shard 0's executor.
pub trait TopicSource {
    /// The version of the topic set: grows whenever a topic is created or deleted. Asked
    /// before every heartbeat (cheap), to notice a change nobody signalled.
    fn topics_version(&self) -> u64;

    /// The version and every topic this broker holds, consistent with each other.
    fn topics(&self) -> (u64, Vec<TopicConfig>);
}

/// How the last attempt with one name server went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameServerStatus {
    /// No attempt has finished yet.
    Unknown,
    /// The last exchange succeeded; the name server holds this topics version.
    Registered {
        /// The version last registered there.
        topics_version: u64,
    },
    /// The last attempt failed (unreachable, timed out, closed or refused); retrying.
    Failing,
}

/// The registration of one broker with every name server. See the module docs.
pub struct Registration {
    identity: Rc<BrokerIdentity>,
    settings: RegistrationSettings,
    topics: Rc<dyn TopicSource>,
    topics_changed: Signal,
    /// Stopped once notified (generation > 0).
    stop: Signal,
    /// One per name server, in `settings.name_servers` order.
    statuses: Vec<Cell<NameServerStatus>>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("identity", &self.identity)
            .field("settings", &self.settings)
            .field("statuses", &self.statuses)
            .finish()
    }
}

/// What ended a pause between two exchanges.
enum Wake {
    /// The pause is over.
    Elapsed,
    /// [`Registration::topics_changed`] was called.
    TopicsChanged,
    /// [`Registration::stop`] was called.
    Stopped,
}

/// What a name server got from the last successful exchange on the current connection.
#[derive(Clone, Copy, Debug)]
struct Registered {
    /// The topics version registered.
    topics_version: u64,
    /// The `topics_changed` generation the registration reflects.
    changes_seen: u64,
}

/// A failed attempt: what was being done and why it failed.
struct Failure {
    operation: RpcOperation,
    error: RpcError,
}

impl Failure {
    fn describe(&self, address: &str) -> String {
        let operation = match self.operation {
            RpcOperation::Connect => "connection",
            RpcOperation::Call(Opcode::RegisterBroker) => "registration",
            RpcOperation::Call(Opcode::BrokerHeartbeat) => "heartbeat",
            RpcOperation::Call(_) => "request",
        };
        match &self.error {
            RpcError::Refused { .. } | RpcError::RefusedWithUnknownCode { .. } => {
                format!(
                    "name server {address} refused the {operation}: {}",
                    self.error
                )
            }
            error => format!("name server {address} unreachable: {error}"),
        }
    }
}

/// Tracks one name server's outage, so that it is reported once when it starts and once
/// when it ends.
#[derive(Debug, Default)]
struct Outage {
    /// When the first failed attempt of the current outage happened.
    since: Option<Instant>,
    failed_attempts: u64,
}

impl Outage {
    /// Records a failed attempt at `now`; true if it starts an outage (report it).
    fn failed(&mut self, now: Instant) -> bool {
        self.failed_attempts += 1;
        if self.since.is_some() {
            return false;
        }
        self.since = Some(now);
        true
    }

    /// Records a success at `now`; if it ends an outage, how many attempts failed and for
    /// how long.
    fn succeeded(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let failed_attempts = std::mem::take(&mut self.failed_attempts);
        Some((failed_attempts, now.saturating_duration_since(since)))
    }
}

impl Registration {
    /// A registration of `identity` with the name servers of `settings`, its topics from
    /// `topics`. Nothing happens until [`Registration::run`].
    ///
    /// # Panics
    ///
    /// If `settings.heartbeat_interval` or `settings.request_timeout` is zero (the broker
    /// config refuses both).
    pub fn new(
        identity: Rc<BrokerIdentity>,
        settings: RegistrationSettings,
        topics: Rc<dyn TopicSource>,
    ) -> Rc<Registration> {
        assert!(
            !settings.heartbeat_interval.is_zero(),
            "heartbeat_interval must not be zero"
        );
        assert!(
            !settings.request_timeout.is_zero(),
            "request_timeout must not be zero"
        );
        let statuses = settings
            .name_servers
            .iter()
            .map(|_| Cell::new(NameServerStatus::Unknown))
            .collect();
        Rc::new(Registration {
            identity,
            settings,
            topics,
            topics_changed: Signal::default(),
            stop: Signal::default(),
            statuses,
        })
    }

    /// Who registers.
    pub fn identity(&self) -> &BrokerIdentity {
        &self.identity
    }

    /// With which name servers, how often.
    pub fn settings(&self) -> &RegistrationSettings {
        &self.settings
    }

    /// Keeps every name server informed until [`Registration::stop`] is called (returns at
    /// once if it already was). Must run on a glommio executor; call it once.
    pub async fn run(self: Rc<Self>) {
        let loops: Vec<glommio::Task<()>> = (0..self.settings.name_servers.len())
            .map(|index| glommio::spawn_local(self.clone().keep_informed(index)))
            .collect();
        if loops.is_empty() {
            self.stop.changed_since(0).await;
        }
        for task in loops {
            task.await;
        }
    }

    /// The topic set changed (a topic was created or deleted): every name server gets a new
    /// registration at once rather than at its next heartbeat.
    pub fn topics_changed(&self) {
        self.topics_changed.notify();
    }

    /// Ends [`Registration::run`]: every loop stops at its next await, even mid-request.
    /// Permanent.
    pub fn stop(&self) {
        self.stop.notify();
    }

    /// How many name servers the last exchange succeeded with.
    pub fn registered_with(&self) -> usize {
        self.statuses
            .iter()
            .filter(|status| matches!(status.get(), NameServerStatus::Registered { .. }))
            .count()
    }

    /// Each name server with how the last attempt with it went, in settings order.
    pub fn statuses(&self) -> Vec<(&str, NameServerStatus)> {
        self.settings
            .name_servers
            .iter()
            .zip(&self.statuses)
            .map(|(address, status)| (address.as_str(), status.get()))
            .collect()
    }

    /// Tells every name server that this broker leaves: see [`unregister_all`].
    pub async fn unregister_all(&self) -> usize {
        unregister_all(&self.identity, &self.settings).await
    }

    fn stopped(&self) -> bool {
        self.stop.generation() != 0
    }

    /// The loop of one name server: exchange, pause, until stopped.
    async fn keep_informed(self: Rc<Self>, index: usize) {
        let address = self.settings.name_servers[index].as_str();
        let retry_pause = self.settings.retry_pause();
        let mut connection: Option<RpcConnection> = None;
        let mut registered: Option<Registered> = None;
        let mut outage = Outage::default();
        while !self.stopped() {
            let exchanged = future::or(
                async {
                    Some(
                        self.exchange(address, &mut connection, &mut registered)
                            .await,
                    )
                },
                async {
                    self.stop.changed_since(0).await;
                    None
                },
            )
            .await;
            let pause = match exchanged {
                None => return,
                Some(Ok(topics_version)) => {
                    self.statuses[index].set(NameServerStatus::Registered { topics_version });
                    if let Some((failed_attempts, down_for)) = outage.succeeded(Instant::now()) {
                        tracing::info!(
                            name_server = address,
                            failed_attempts,
                            "name server {address} reachable again, after {} ms of failures",
                            down_for.as_millis()
                        );
                    }
                    self.pause(
                        self.settings.heartbeat_interval,
                        registered.map(|registered| registered.changes_seen),
                    )
                    .await
                }
                Some(Err(failure)) => {
                    connection = None;
                    registered = None;
                    self.statuses[index].set(NameServerStatus::Failing);
                    let description = failure.describe(address);
                    if outage.failed(Instant::now()) {
                        tracing::warn!(
                            name_server = address,
                            "{description}; retrying every {} ms",
                            retry_pause.as_millis()
                        );
                    } else {
                        tracing::debug!(name_server = address, "{description}; still retrying");
                    }
                    self.pause(retry_pause, None).await
                }
            };
            match pause {
                Wake::Stopped => return,
                Wake::Elapsed | Wake::TopicsChanged => {}
            }
        }
    }

    /// Waits `duration`, or until stopped, or (if `changes_seen` is given) until the
    /// topics change past that generation.
    async fn pause(&self, duration: Duration, changes_seen: Option<u64>) -> Wake {
        let stopped = async {
            self.stop.changed_since(0).await;
            Wake::Stopped
        };
        let elapsed = async {
            glommio::timer::sleep(duration).await;
            Wake::Elapsed
        };
        match changes_seen {
            Some(seen) => {
                let changed = async {
                    self.topics_changed.changed_since(seen).await;
                    Wake::TopicsChanged
                };
                future::or(stopped, future::or(changed, elapsed)).await
            }
            None => future::or(stopped, elapsed).await,
        }
    }

    /// One round with a name server: connect if needed, then heartbeat, or register if
    /// the name server needs it. Returns the topics version the name server now holds.
    async fn exchange(
        &self,
        address: &str,
        connection: &mut Option<RpcConnection>,
        registered: &mut Option<Registered>,
    ) -> Result<u64, Failure> {
        let timeout = self.settings.request_timeout;
        let connection = match connection {
            Some(connection) => connection,
            None => {
                let opened = RpcConnection::connect(address, timeout)
                    .await
                    .map_err(|error| Failure {
                        operation: RpcOperation::Connect,
                        error,
                    })?;
                // A new connection may reach a name server that restarted empty.
                *registered = None;
                connection.insert(opened)
            }
        };
        // Captured before the topics are read: a change after this point is seen next time.
        let changes_seen = self.topics_changed.generation();
        if let Some(last) = *registered {
            let up_to_date = last.changes_seen == changes_seen
                && last.topics_version == self.topics.topics_version();
            if up_to_date {
                let heartbeat = BrokerHeartbeatRequest {
                    cluster: self.identity.cluster.clone(),
                    broker_name: self.identity.broker_name.clone(),
                    broker_id: self.identity.broker_id,
                    topics_version: last.topics_version,
                };
                let response: BrokerHeartbeatResponse = connection
                    .call(&heartbeat, timeout)
                    .await
                    .map_err(|error| Failure {
                        operation: RpcOperation::Call(Opcode::BrokerHeartbeat),
                        error,
                    })?;
                if !response.registration_needed {
                    tracing::trace!(name_server = address, "heartbeat acknowledged");
                    return Ok(last.topics_version);
                }
                tracing::debug!(
                    name_server = address,
                    "the name server does not know this broker's topics: registering again"
                );
            }
        }
        let (topics_version, topics) = self.topics.topics();
        let topic_count = topics.len();
        let request = RegisterBrokerRequest {
            cluster: self.identity.cluster.clone(),
            broker_name: self.identity.broker_name.clone(),
            broker_id: self.identity.broker_id,
            address: self.identity.address.clone(),
            shard_count: self.identity.shard_count,
            topics_version,
            topics,
        };
        let response: RegisterBrokerResponse =
            connection
                .call(&request, timeout)
                .await
                .map_err(|error| Failure {
                    operation: RpcOperation::Call(Opcode::RegisterBroker),
                    error,
                })?;
        *registered = Some(Registered {
            topics_version,
            changes_seen,
        });
        tracing::info!(
            name_server = address,
            topics = topic_count,
            topics_version,
            master_address = response.master_address.as_deref().unwrap_or("-"),
            "registered with name server {address}"
        );
        Ok(topics_version)
    }
}

/// Tells every name server of `settings` that the broker `identity` leaves, all at once,
/// each bounded by `request_timeout` (connect and request together). Best effort: a failure
/// is logged and the name server forgets the broker when its heartbeats stop. Returns how
/// many name servers acknowledged. Call after [`Registration::stop`] (a running loop would
/// register again at its next heartbeat). Must run on a glommio executor.
pub async fn unregister_all(identity: &BrokerIdentity, settings: &RegistrationSettings) -> usize {
    let request = Rc::new(UnregisterBrokerRequest {
        cluster: identity.cluster.clone(),
        broker_name: identity.broker_name.clone(),
        broker_id: identity.broker_id,
        address: identity.address.clone(),
    });
    let timeout = settings.request_timeout;
    let tasks: Vec<glommio::Task<bool>> = settings
        .name_servers
        .iter()
        .map(|address| {
            let address = address.clone();
            let request = request.clone();
            glommio::spawn_local(async move {
                let attempt = async {
                    let mut connection = RpcConnection::connect(&address, timeout).await?;
                    connection
                        .call::<_, UnregisterBrokerResponse>(&*request, timeout)
                        .await
                };
                match within(timeout, attempt).await {
                    Some(Ok(_)) => {
                        tracing::info!(name_server = %address, "unregistered from name server {address}");
                        true
                    }
                    Some(Err(error)) => {
                        tracing::warn!(
                            name_server = %address,
                            "could not unregister from name server {address}: {error}"
                        );
                        false
                    }
                    None => {
                        tracing::warn!(
                            name_server = %address,
                            "could not unregister from name server {address}: no answer within \
                             {} ms",
                            timeout.as_millis()
                        );
                        false
                    }
                }
            })
        })
        .collect();
    let mut acknowledged = 0;
    for task in tasks {
        if task.await {
            acknowledged += 1;
        }
    }
    acknowledged
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use spillway_wire::message::{GetTopicRouteRequest, GetTopicRouteResponse, ShardLayout};
    use spillway_wire::ErrorCode;

    use super::*;
    use crate::rpc_client::test_support::{
        free_address, run, TestNameServer, DEADLINE, POLL_PAUSE,
    };

    const TIMEOUT: Duration = Duration::from_secs(2);
    /// Long enough that only a signal can explain a registration within [`DEADLINE`].
    const SLOW_HEARTBEAT: Duration = Duration::from_secs(60);
    const FAST_HEARTBEAT: Duration = Duration::from_millis(100);

    /// Topics a test changes at will.
    struct TestTopics {
        current: RefCell<(u64, Vec<TopicConfig>)>,
    }

    impl TestTopics {
        fn new(topics: Vec<TopicConfig>) -> Rc<TestTopics> {
            Rc::new(TestTopics {
                current: RefCell::new((1, topics)),
            })
        }

        fn set(&self, topics: Vec<TopicConfig>) {
            let mut current = self.current.borrow_mut();
            current.0 += 1;
            current.1 = topics;
        }
    }

    impl TopicSource for TestTopics {
        fn topics_version(&self) -> u64 {
            self.current.borrow().0
        }

        fn topics(&self) -> (u64, Vec<TopicConfig>) {
            self.current.borrow().clone()
        }
    }

    fn topic(name: &str, queue_count: u32) -> TopicConfig {
        TopicConfig {
            topic: name.into(),
            queue_count,
            shard_layout: ShardLayout::RoundRobin,
        }
    }

    fn identity() -> BrokerIdentity {
        BrokerIdentity {
            cluster: "main".into(),
            broker_name: "broker-a".into(),
            broker_id: BrokerId::MASTER,
            address: "10.0.0.1:10911".into(),
            shard_count: 2,
        }
    }

    fn settings(name_servers: Vec<String>, heartbeat_interval: Duration) -> RegistrationSettings {
        RegistrationSettings {
            name_servers,
            heartbeat_interval,
            request_timeout: TIMEOUT,
        }
    }

    async fn route(endpoint: &str, topic: &str) -> Result<GetTopicRouteResponse, RpcError> {
        let mut connection = RpcConnection::connect(endpoint, TIMEOUT).await?;
        connection
            .call(
                &GetTopicRouteRequest {
                    topic: topic.into(),
                },
                TIMEOUT,
            )
            .await
    }

    fn is_not_found(result: &Result<GetTopicRouteResponse, RpcError>) -> bool {
        matches!(
            result,
            Err(RpcError::Refused {
                code: ErrorCode::TopicNotFound,
                ..
            })
        )
    }

    /// Asks `endpoint` for `topic`'s route until `accept` likes the answer.
    async fn wait_for_route(
        endpoint: &str,
        topic: &str,
        accept: impl Fn(&Result<GetTopicRouteResponse, RpcError>) -> bool,
    ) -> Result<GetTopicRouteResponse, RpcError> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let answer = route(endpoint, topic).await;
            if accept(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "route of {topic} at {endpoint} never as expected; last answer: {answer:?}"
            );
            glommio::timer::sleep(POLL_PAUSE).await;
        }
    }

    async fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            glommio::timer::sleep(POLL_PAUSE).await;
        }
    }

    /// Stops the registration and checks that `run` ends promptly.
    async fn stop(registration: &Registration, running: glommio::Task<()>) {
        registration.stop();
        assert!(
            within(DEADLINE, running).await.is_some(),
            "run did not end after stop"
        );
    }

    #[test]
    fn registration_publishes_topics_and_follows_signalled_changes_until_unregistered() {
        let name_server = TestNameServer::start();
        let endpoint = name_server.endpoint();
        run(move || async move {
            let topics = TestTopics::new(vec![topic("orders", 4)]);
            let registration = Registration::new(
                Rc::new(identity()),
                settings(vec![endpoint.clone()], SLOW_HEARTBEAT),
                topics.clone(),
            );
            let running = glommio::spawn_local(registration.clone().run());

            let orders = wait_for_route(&endpoint, "orders", Result::is_ok)
                .await
                .expect("a route");
            let group = &orders.brokers[0];
            assert_eq!(group.broker_name, "broker-a");
            assert_eq!(group.members[0].address, "10.0.0.1:10911");
            assert_eq!(group.shard_count, 2);
            assert_eq!(group.queue_count, 4);
            wait_until("registered", || registration.registered_with() == 1).await;
            assert_eq!(
                registration.statuses(),
                [(
                    endpoint.as_str(),
                    NameServerStatus::Registered { topics_version: 1 }
                )]
            );

            // A topic created, then one deleted: each signalled, each published long before
            // the next heartbeat would have carried it.
            topics.set(vec![topic("orders", 4), topic("audit", 1)]);
            registration.topics_changed();
            wait_for_route(&endpoint, "audit", Result::is_ok).await.ok();
            topics.set(vec![topic("audit", 1)]);
            registration.topics_changed();
            wait_for_route(&endpoint, "orders", is_not_found).await.ok();
            wait_until("version 3 registered", || {
                registration.statuses()[0].1 == NameServerStatus::Registered { topics_version: 3 }
            })
            .await;

            stop(&registration, running).await;
            assert_eq!(registration.unregister_all().await, 1);
            assert!(is_not_found(&route(&endpoint, "audit").await));
        });
    }

    #[test]
    fn a_new_topics_version_is_registered_at_the_next_heartbeat_without_a_signal() {
        let name_server = TestNameServer::start();
        let endpoint = name_server.endpoint();
        run(move || async move {
            let topics = TestTopics::new(vec![topic("orders", 4)]);
            let registration = Registration::new(
                Rc::new(identity()),
                settings(vec![endpoint.clone()], FAST_HEARTBEAT),
                topics.clone(),
            );
            let running = glommio::spawn_local(registration.clone().run());
            wait_for_route(&endpoint, "orders", Result::is_ok)
                .await
                .ok();
            topics.set(vec![topic("orders", 8)]);
            let grown = wait_for_route(
                &endpoint,
                "orders",
                |answer| matches!(answer, Ok(route) if route.brokers[0].queue_count == 8),
            )
            .await
            .expect("a route");
            assert_eq!(grown.brokers.len(), 1);
            stop(&registration, running).await;
        });
    }

    #[test]
    fn registration_retries_until_a_late_name_server_comes_up() {
        let early = TestNameServer::start();
        let early_endpoint = early.endpoint();
        let late_address = free_address();
        run(move || async move {
            let late_endpoint = late_address.to_string();
            let registration = Registration::new(
                Rc::new(identity()),
                settings(
                    vec![early_endpoint.clone(), late_endpoint.clone()],
                    FAST_HEARTBEAT,
                ),
                TestTopics::new(vec![topic("orders", 4)]),
            );
            let running = glommio::spawn_local(registration.clone().run());
            // The reachable name server is served while the other one is down.
            wait_for_route(&early_endpoint, "orders", Result::is_ok)
                .await
                .ok();
            wait_until("the late name server to be failing", || {
                registration.statuses()[1].1 == NameServerStatus::Failing
            })
            .await;
            wait_until("registered with the early one", || {
                registration.registered_with() == 1
            })
            .await;

            let late = TestNameServer::start_on(late_address);
            wait_for_route(&late_endpoint, "orders", Result::is_ok)
                .await
                .ok();
            wait_until("registered with both", || {
                registration.registered_with() == 2
            })
            .await;

            stop(&registration, running).await;
            assert_eq!(registration.unregister_all().await, 2);
            drop(late);
        });
    }

    #[test]
    fn registration_refills_a_name_server_that_restarted_empty() {
        let address = free_address();
        let first = TestNameServer::start_on(address);
        let endpoint = first.endpoint();
        run(move || async move {
            let registration = Registration::new(
                Rc::new(identity()),
                settings(vec![endpoint.clone()], FAST_HEARTBEAT),
                TestTopics::new(vec![topic("orders", 4)]),
            );
            let running = glommio::spawn_local(registration.clone().run());
            wait_for_route(&endpoint, "orders", Result::is_ok)
                .await
                .ok();
            // Stop it (joining its thread) and start a new, empty one on the same port. The
            // in-process name server leaves its accepted connections open when it stops, so
            // the broker notices by its heartbeat timing out (TIMEOUT), then reconnects.
            drop(first);
            let second = TestNameServer::start_on(address);
            wait_for_route(&endpoint, "orders", Result::is_ok)
                .await
                .ok();
            stop(&registration, running).await;
            drop(second);
        });
    }

    #[test]
    fn stop_ends_the_loops_while_no_name_server_is_reachable() {
        let unreachable = free_address().to_string();
        run(move || async move {
            let registration = Registration::new(
                Rc::new(identity()),
                settings(vec![unreachable.clone()], SLOW_HEARTBEAT),
                TestTopics::new(vec![]),
            );
            let running = glommio::spawn_local(registration.clone().run());
            wait_until("the name server to be failing", || {
                registration.statuses()[0].1 == NameServerStatus::Failing
            })
            .await;
            assert_eq!(registration.registered_with(), 0);
            stop(&registration, running).await;
            // Best effort, bounded: nobody acknowledges.
            assert_eq!(registration.unregister_all().await, 0);
        });
    }

    #[test]
    fn an_outage_is_reported_once_and_its_end_once() {
        let start = Instant::now();
        let mut outage = Outage::default();
        assert_eq!(outage.succeeded(start), None);
        assert!(outage.failed(start));
        assert!(!outage.failed(start + Duration::from_secs(1)));
        assert!(!outage.failed(start + Duration::from_secs(2)));
        assert_eq!(
            outage.succeeded(start + Duration::from_secs(3)),
            Some((3, Duration::from_secs(3)))
        );
        assert_eq!(outage.succeeded(start + Duration::from_secs(4)), None);
        // The next outage is reported again.
        assert!(outage.failed(start + Duration::from_secs(5)));
    }

    #[test]
    fn settings_retry_at_most_every_second_and_at_heartbeat_pace_below() {
        let mut settings = settings(vec![], Duration::from_secs(30));
        assert_eq!(settings.retry_pause(), MAX_RETRY_PAUSE);
        settings.heartbeat_interval = Duration::from_millis(100);
        assert_eq!(settings.retry_pause(), Duration::from_millis(100));
    }

    #[test]
    fn identity_and_settings_come_from_the_config() {
        let config = BrokerConfig::from_toml_str_for(
            r#"
            cluster = "main"
            broker_name = "broker-b"
            broker_id = 1
            listen_address = "127.0.0.1:10911"
            name_servers = ["127.0.0.1:9876", "ns.example:9876"]
            heartbeat_interval_ms = 500
            name_server_timeout_ms = 700
            shard_count = 3
            [storage]
            data_dir = "/tmp/spillway"
            "#,
            &crate::cores::AvailableCores::first(4),
        );
        let config = match config {
            Ok(config) => config,
            Err(error) => panic!("config: {error}"),
        };
        let identity = BrokerIdentity::from_config(&config, "127.0.0.1:10911".into());
        assert_eq!(identity.broker_id, BrokerId(1));
        assert_eq!(identity.shard_count, 3);
        assert_eq!(identity.broker_name, "broker-b");
        let settings = RegistrationSettings::from_config(&config);
        assert_eq!(settings.name_servers, ["127.0.0.1:9876", "ns.example:9876"]);
        assert_eq!(settings.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(settings.request_timeout, Duration::from_millis(700));
    }
}
