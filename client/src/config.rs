//! Configuration: [`ClientConfig`] (what every producer, consumer and admin handle of one
//! client shares: name servers, client id, timeouts, connection limits),
//! [`ProducerConfig`] (batching, memory bound, retries) and [`PushConsumerConfig`] (group,
//! subscription, where to start, flow control, commits, rebalancing, handler retries).
//!
//! Plain structs with public fields and documented defaults, so a caller writes
//! `ProducerConfig { linger: Duration::ZERO, ..ProducerConfig::new(client) }`. Every limit
//! has a named default and a range checked by `validate` when a client or producer starts;
//! the relations between the defaults are checked at compile time.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spillway_storage::record::{ABSOLUTE_MAX_RECORD_BYTES, MAX_TOPIC_BYTES};
use spillway_wire::message::{ConsumeMode, FlushExpectation, MAX_PRODUCE_PARTS};
use spillway_wire::{ABSOLUTE_MAX_FRAME_BYTES, DEFAULT_MAX_FRAME_BYTES, MIN_MAX_FRAME_BYTES};

use crate::error::{ClientError, Result};

/// Default [`ClientConfig::request_timeout`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ClientConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default [`ClientConfig::route_refresh_interval`].
pub const DEFAULT_ROUTE_REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default [`ClientConfig::heartbeat_interval`]: well inside the broker's default client
/// timeout (30 s), so a live client is never dropped from its groups.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// Default [`ClientConfig::max_in_flight_requests_per_connection`].
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION: usize = 1024;
/// Highest [`ClientConfig::max_in_flight_requests_per_connection`].
pub const MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION: usize = 65_536;
/// Longest timeout or interval any setting accepts (one day).
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);
/// Most name servers a client may list.
pub const MAX_NAME_SERVERS: usize = 64;

/// Default [`ProducerConfig::producer_group`].
pub const DEFAULT_PRODUCER_GROUP: &str = "DEFAULT_PRODUCER";
/// Default [`ProducerConfig::linger`].
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);
/// Default [`ProducerConfig::batch_bytes`].
pub const DEFAULT_BATCH_BYTES: usize = 256 << 10;
/// Smallest [`ProducerConfig::batch_bytes`].
pub const MIN_BATCH_BYTES: usize = 1 << 10;
/// Default [`ProducerConfig::max_pending_bytes`].
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 << 20;
/// Default [`ProducerConfig::max_message_bytes`]: the broker's default record limit.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Default [`ProducerConfig::retries`].
pub const DEFAULT_RETRIES: u32 = 2;
/// Highest [`ProducerConfig::retries`].
pub const MAX_RETRIES: u32 = 100;
/// Default [`ProducerConfig::retry_backoff`].
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// Default [`ProducerConfig::max_in_flight_requests_per_broker`].
pub const DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_BROKER: usize = 4;
/// Longest group or client id (the broker's name limit).
pub const MAX_NAME_BYTES: usize = 127;

/// Default [`PushConsumerConfig::tag_expression`]: every tag.
pub const DEFAULT_TAG_EXPRESSION: &str = "*";
/// Longest [`PushConsumerConfig::tag_expression`] (the brokers' limit for subscriptions in
/// heartbeats).
pub const MAX_TAG_EXPRESSION_BYTES: usize = 1024;
/// Default [`PushConsumerConfig::max_in_flight_per_queue`].
pub const DEFAULT_MAX_IN_FLIGHT_PER_QUEUE: usize = 1024;
/// Highest [`PushConsumerConfig::max_in_flight_per_queue`].
pub const MAX_IN_FLIGHT_PER_QUEUE: usize = 1 << 20;
/// Default [`PushConsumerConfig::pull_batch`].
pub const DEFAULT_PULL_BATCH: u32 = 256;
/// Highest [`PushConsumerConfig::pull_batch`].
pub const MAX_PULL_BATCH: u32 = 65_536;
/// Default [`PushConsumerConfig::pull_wait`].
pub const DEFAULT_PULL_WAIT: Duration = Duration::from_secs(5);
/// Longest [`PushConsumerConfig::pull_wait`] (the brokers' default cap on a long poll).
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(30);
/// Default [`PushConsumerConfig::consume_batch`].
pub const DEFAULT_CONSUME_BATCH: usize = 32;
/// Default [`PushConsumerConfig::consume_threads`].
pub const DEFAULT_CONSUME_THREADS: usize = 8;
/// Highest [`PushConsumerConfig::consume_threads`].
pub const MAX_CONSUME_THREADS: usize = 1024;
/// Default [`PushConsumerConfig::auto_commit_interval`].
pub const DEFAULT_AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Default [`PushConsumerConfig::rebalance_interval`]. The push consumer heartbeats on
/// every rebalance, so this is also how often the brokers hear from it.
pub const DEFAULT_REBALANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Default [`PushConsumerConfig::consume_retries`].
pub const DEFAULT_CONSUME_RETRIES: u32 = 3;
/// Default [`PushConsumerConfig::retry_pause`].
pub const DEFAULT_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Room kept in a produce frame for the fixed part and the header: the header of
/// [`MAX_PRODUCE_PARTS`] parts with the longest topic names is about 170 KiB.
pub const PRODUCE_HEADER_RESERVE_BYTES: usize = 256 << 10;

const _: () = assert!(DEFAULT_BATCH_BYTES <= DEFAULT_MAX_PENDING_BYTES);
const _: () = assert!(DEFAULT_MAX_MESSAGE_BYTES <= DEFAULT_MAX_PENDING_BYTES);
const _: () = assert!(DEFAULT_MAX_MESSAGE_BYTES <= ABSOLUTE_MAX_RECORD_BYTES);
const _: () = assert!(MIN_BATCH_BYTES <= DEFAULT_BATCH_BYTES);
const _: () =
    assert!(DEFAULT_MAX_MESSAGE_BYTES + PRODUCE_HEADER_RESERVE_BYTES <= DEFAULT_MAX_FRAME_BYTES);
const _: () =
    assert!(DEFAULT_BATCH_BYTES + PRODUCE_HEADER_RESERVE_BYTES <= DEFAULT_MAX_FRAME_BYTES);
const _: () = assert!(MAX_PRODUCE_PARTS * (MAX_NAME_BYTES + 64) < PRODUCE_HEADER_RESERVE_BYTES);
const _: () = assert!(
    DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_BROKER <= DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION
);
const _: () =
    assert!(DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION <= MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION);
// A default pull can fill what the default flow control allows, and a default handler
// batch fits in it.
const _: () = assert!(DEFAULT_PULL_BATCH as usize <= DEFAULT_MAX_IN_FLIGHT_PER_QUEUE);
const _: () = assert!(DEFAULT_CONSUME_BATCH <= DEFAULT_MAX_IN_FLIGHT_PER_QUEUE);
const _: () = assert!(DEFAULT_MAX_IN_FLIGHT_PER_QUEUE <= MAX_IN_FLIGHT_PER_QUEUE);
const _: () = assert!(DEFAULT_PULL_BATCH <= MAX_PULL_BATCH);
const _: () = assert!(DEFAULT_CONSUME_THREADS <= MAX_CONSUME_THREADS);
const _: () = assert!(DEFAULT_CONSUME_RETRIES <= MAX_RETRIES);
// A push consumer heartbeats at least as often as a client does by default.
const _: () =
    assert!(DEFAULT_REBALANCE_INTERVAL.as_millis() <= DEFAULT_HEARTBEAT_INTERVAL.as_millis());
const _: () = assert!(DEFAULT_PULL_WAIT.as_millis() <= MAX_PULL_WAIT.as_millis());

/// What one client (and every producer, consumer and admin handle made from it) shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Name servers, `host:port`; routes are asked of any of them, the next one on failure.
    pub name_servers: Vec<String>,
    /// Identifies this client to brokers in heartbeats (consumer group membership).
    /// Default: `host@pid@start_ms`-like, unique per process start.
    pub client_id: String,
    /// How long a request may wait for its answer (a pull adds its own `max_wait`).
    /// Default [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
    /// How long connecting to a broker or name server may take. Default
    /// [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// How often cached topic routes are fetched again. Default
    /// [`DEFAULT_ROUTE_REFRESH_INTERVAL`].
    pub route_refresh_interval: Duration,
    /// How often the client heartbeats to the brokers it knows, while it has producer or
    /// consumer groups to announce. Default [`DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// Requests in flight on one connection; further requests wait for an answer. Default
    /// [`DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION`].
    pub max_in_flight_requests_per_connection: usize,
    /// Largest frame sent or accepted (length prefix included). Default
    /// [`DEFAULT_MAX_FRAME_BYTES`], the brokers' default.
    pub max_frame_bytes: usize,
}

impl ClientConfig {
    /// Defaults, with these name servers.
    pub fn new<I, S>(name_servers: I) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            name_servers: name_servers.into_iter().map(Into::into).collect(),
            client_id: default_client_id(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            route_refresh_interval: DEFAULT_ROUTE_REFRESH_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            max_in_flight_requests_per_connection: DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// Checks every value against its range.
    pub fn validate(&self) -> Result<()> {
        if self.name_servers.len() > MAX_NAME_SERVERS {
            return invalid(format!(
                "name_servers lists {} servers, above the limit of {MAX_NAME_SERVERS}",
                self.name_servers.len()
            ));
        }
        if self.client_id.is_empty() || self.client_id.len() > MAX_NAME_BYTES {
            return invalid(format!(
                "client_id must be 1 to {MAX_NAME_BYTES} bytes, not {}",
                self.client_id.len()
            ));
        }
        check_duration("request_timeout", self.request_timeout)?;
        check_duration("connect_timeout", self.connect_timeout)?;
        check_duration("route_refresh_interval", self.route_refresh_interval)?;
        check_duration("heartbeat_interval", self.heartbeat_interval)?;
        if !(1..=MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION)
            .contains(&self.max_in_flight_requests_per_connection)
        {
            return invalid(format!(
                "max_in_flight_requests_per_connection {} outside 1..={MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION}",
                self.max_in_flight_requests_per_connection
            ));
        }
        if !(MIN_MAX_FRAME_BYTES..=ABSOLUTE_MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return invalid(format!(
                "max_frame_bytes {} outside {MIN_MAX_FRAME_BYTES}..={ABSOLUTE_MAX_FRAME_BYTES}",
                self.max_frame_bytes
            ));
        }
        Ok(())
    }
}

/// A producer's settings, with the client it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerConfig {
    /// The client settings (ignored by [`crate::Producer::start_on`], which reuses a
    /// running client).
    pub client: ClientConfig,
    /// The producer group named in produce requests and heartbeats. Default
    /// [`DEFAULT_PRODUCER_GROUP`].
    pub producer_group: String,
    /// How long a message may wait for more messages to share its batch before the batch
    /// is sent; zero sends at once (messages still gather while earlier requests are in
    /// flight). Blocking [`crate::Producer::send`] never lingers. Default [`DEFAULT_LINGER`].
    pub linger: Duration,
    /// A queue's batch is sent once it holds this many bytes, whatever the linger. Default
    /// [`DEFAULT_BATCH_BYTES`].
    pub batch_bytes: usize,
    /// Encoded bytes of messages not yet acknowledged (or failed) that the producer holds;
    /// sends wait while above. Default [`DEFAULT_MAX_PENDING_BYTES`].
    pub max_pending_bytes: usize,
    /// Largest encoded message accepted. Default [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// How many times a batch that failed with a retriable error is sent again. Default
    /// [`DEFAULT_RETRIES`].
    pub retries: u32,
    /// Pause before the n-th retry to the same queue (keyed sends): n × this. Default
    /// [`DEFAULT_RETRY_BACKOFF`].
    pub retry_backoff: Duration,
    /// Produce requests of this producer in flight to one broker shard at once (each
    /// request carries the batches of one shard's queues). Default
    /// [`DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_BROKER`].
    pub max_in_flight_requests_per_broker: usize,
    /// When brokers acknowledge. Default [`FlushExpectation::BrokerDefault`].
    pub flush: FlushExpectation,
    /// Send a batch at once when no request of this producer to its broker shard is in
    /// flight; `linger` then only holds batches while one is (Nagle's rule, the answer
    /// being the ack). Lower latency at low and moderate rates (measured end to end at
    /// 50 k msgs/s of 1 KiB: p50 1.85 → 0.82 ms, p99 3.1 → 1.9 ms), but smaller requests
    /// at full speed (about 9% fewer 100-byte messages per second). Default `false`.
    pub send_when_idle: bool,
}

impl ProducerConfig {
    /// Defaults, on a client with `client`'s settings.
    pub fn new(client: ClientConfig) -> ProducerConfig {
        ProducerConfig {
            client,
            producer_group: DEFAULT_PRODUCER_GROUP.to_owned(),
            linger: DEFAULT_LINGER,
            batch_bytes: DEFAULT_BATCH_BYTES,
            max_pending_bytes: DEFAULT_MAX_PENDING_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            retries: DEFAULT_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            max_in_flight_requests_per_broker: DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_BROKER,
            flush: FlushExpectation::BrokerDefault,
            send_when_idle: false,
        }
    }

    /// Checks the producer's values (not `client`'s) against their ranges and each other,
    /// for a client whose frames are at most `max_frame_bytes` with
    /// `max_in_flight_requests_per_connection`.
    pub fn validate_for(&self, client: &ClientConfig) -> Result<()> {
        if self.producer_group.is_empty() || self.producer_group.len() > MAX_NAME_BYTES {
            return invalid(format!(
                "producer_group must be 1 to {MAX_NAME_BYTES} bytes, not {}",
                self.producer_group.len()
            ));
        }
        if self.linger > MAX_DURATION {
            return invalid(format!("linger {:?} above {MAX_DURATION:?}", self.linger));
        }
        check_duration("retry_backoff", self.retry_backoff)?;
        let request_payload = max_request_payload_bytes(client.max_frame_bytes);
        if !(MIN_BATCH_BYTES..=request_payload).contains(&self.batch_bytes) {
            return invalid(format!(
                "batch_bytes {} outside {MIN_BATCH_BYTES}..={request_payload} (max_frame_bytes \
                 less {PRODUCE_HEADER_RESERVE_BYTES} for the header)",
                self.batch_bytes
            ));
        }
        let message_limit = request_payload
            .min(ABSOLUTE_MAX_RECORD_BYTES)
            .min(self.max_pending_bytes);
        if !(1..=message_limit).contains(&self.max_message_bytes) {
            return invalid(format!(
                "max_message_bytes {} outside 1..={message_limit} (at most the frame's \
                 payload room, the record format's limit and max_pending_bytes)",
                self.max_message_bytes
            ));
        }
        if self.max_pending_bytes < self.batch_bytes {
            return invalid(format!(
                "max_pending_bytes {} is below batch_bytes {}",
                self.max_pending_bytes, self.batch_bytes
            ));
        }
        if self.retries > MAX_RETRIES {
            return invalid(format!("retries {} above {MAX_RETRIES}", self.retries));
        }
        if !(1..=client.max_in_flight_requests_per_connection)
            .contains(&self.max_in_flight_requests_per_broker)
        {
            return invalid(format!(
                "max_in_flight_requests_per_broker {} outside 1..={} \
                 (max_in_flight_requests_per_connection)",
                self.max_in_flight_requests_per_broker,
                client.max_in_flight_requests_per_connection
            ));
        }
        Ok(())
    }
}

/// Where a push consumer starts reading a queue its group has no committed offset for
/// (clustering), or that it has no local offset for (broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// The queue's oldest stored message.
    Earliest,
    /// The queue's end when the consumer first takes the queue: only later messages.
    Latest,
    /// The first message the broker stored at or after this time (ms since the Unix
    /// epoch); the queue's end if none.
    Timestamp(i64),
}

/// A push consumer's settings, with the client it runs on.
///
/// Commits are automatic every `auto_commit_interval`, or manual (`None`): then handled
/// messages are committed only by [`crate::PushConsumer::commit`] (or a
/// [`crate::CommitHandle`]), never on their own, not even at shutdown or when a queue moves
/// to another member, so what the caller did not commit is delivered again. (Either way,
/// a queue the group never committed gets its `start_from` position committed when first
/// taken, so that later owners start from the same place.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushConsumerConfig {
    /// The client settings (ignored by [`crate::PushConsumer::start_on`], which reuses a
    /// running client).
    pub client: ClientConfig,
    /// The consumer group: 1 to [`MAX_NAME_BYTES`] bytes.
    pub consumer_group: String,
    /// The topic it reads.
    pub topic: String,
    /// Which tags: `*` (or empty) for all, else tags separated by `||`. Default
    /// [`DEFAULT_TAG_EXPRESSION`].
    pub tag_expression: String,
    /// Clustering (the group's members split the queues; each message goes to one member)
    /// or broadcasting (every member reads every queue). Default clustering.
    pub mode: ConsumeMode,
    /// Where to start a queue without a committed (clustering) or local (broadcasting)
    /// offset. Default [`StartFrom::Latest`].
    pub start_from: StartFrom,
    /// Messages of one queue pulled but not yet handled (waiting or in the handler); the
    /// queue's pulls wait while this many are. Bounds memory. Default
    /// [`DEFAULT_MAX_IN_FLIGHT_PER_QUEUE`].
    pub max_in_flight_per_queue: usize,
    /// Most messages one pull asks for. Default [`DEFAULT_PULL_BATCH`].
    pub pull_batch: u32,
    /// How long a pull waits on the broker for new messages (long polling). Shutting down
    /// or losing the queue does not wait for it. Default [`DEFAULT_PULL_WAIT`].
    pub pull_wait: Duration,
    /// Most messages (of one queue, in order) one call of a per-batch handler gets; a
    /// per-message handler is called once per message either way. Default
    /// [`DEFAULT_CONSUME_BATCH`].
    pub consume_batch: usize,
    /// Threads running the handler, shared by all the consumer's queues (one queue is
    /// handled by one thread at a time, so its messages stay in order). Default
    /// [`DEFAULT_CONSUME_THREADS`].
    pub consume_threads: usize,
    /// Commit every this often (`Some`), or only when asked (`None`: see the type's docs).
    /// Default `Some(`[`DEFAULT_AUTO_COMMIT_INTERVAL`]`)`.
    pub auto_commit_interval: Option<Duration>,
    /// How often the consumer heartbeats, asks the brokers who is in the group and
    /// recomputes its share of the queues. Default [`DEFAULT_REBALANCE_INTERVAL`].
    pub rebalance_interval: Duration,
    /// How many times a message (or batch) whose handler asked for a retry, or panicked,
    /// is handled again before the consumer logs it and moves on. Default
    /// [`DEFAULT_CONSUME_RETRIES`].
    pub consume_retries: u32,
    /// Pause before handling a message again. The queue waits meanwhile (its order is
    /// kept). Default [`DEFAULT_RETRY_PAUSE`].
    pub retry_pause: Duration,
    /// Broadcasting only: a file that keeps the local offsets across restarts (written
    /// whole on every commit, by a rename). `None` keeps them in memory only. Default
    /// `None`.
    pub offset_store_path: Option<PathBuf>,
}

impl PushConsumerConfig {
    /// Defaults, on a client with `client`'s settings, for `consumer_group` reading
    /// `topic`.
    pub fn new(
        client: ClientConfig,
        consumer_group: impl Into<String>,
        topic: impl Into<String>,
    ) -> PushConsumerConfig {
        PushConsumerConfig {
            client,
            consumer_group: consumer_group.into(),
            topic: topic.into(),
            tag_expression: DEFAULT_TAG_EXPRESSION.to_owned(),
            mode: ConsumeMode::Clustering,
            start_from: StartFrom::Latest,
            max_in_flight_per_queue: DEFAULT_MAX_IN_FLIGHT_PER_QUEUE,
            pull_batch: DEFAULT_PULL_BATCH,
            pull_wait: DEFAULT_PULL_WAIT,
            consume_batch: DEFAULT_CONSUME_BATCH,
            consume_threads: DEFAULT_CONSUME_THREADS,
            auto_commit_interval: Some(DEFAULT_AUTO_COMMIT_INTERVAL),
            rebalance_interval: DEFAULT_REBALANCE_INTERVAL,
            consume_retries: DEFAULT_CONSUME_RETRIES,
            retry_pause: DEFAULT_RETRY_PAUSE,
            offset_store_path: None,
        }
    }

    /// Checks the consumer's values (not `client`'s) against their ranges.
    pub fn validate(&self) -> Result<()> {
        if self.consumer_group.is_empty() || self.consumer_group.len() > MAX_NAME_BYTES {
            return invalid(format!(
                "consumer_group must be 1 to {MAX_NAME_BYTES} bytes, not {}",
                self.consumer_group.len()
            ));
        }
        if self.topic.is_empty() || self.topic.len() > MAX_TOPIC_BYTES {
            return invalid(format!(
                "topic must be 1 to {MAX_TOPIC_BYTES} bytes, not {}",
                self.topic.len()
            ));
        }
        if self.tag_expression.len() > MAX_TAG_EXPRESSION_BYTES {
            return invalid(format!(
                "tag_expression of {} bytes, above {MAX_TAG_EXPRESSION_BYTES}",
                self.tag_expression.len()
            ));
        }
        if !(1..=MAX_IN_FLIGHT_PER_QUEUE).contains(&self.max_in_flight_per_queue) {
            return invalid(format!(
                "max_in_flight_per_queue {} outside 1..={MAX_IN_FLIGHT_PER_QUEUE}",
                self.max_in_flight_per_queue
            ));
        }
        if !(1..=MAX_PULL_BATCH).contains(&self.pull_batch) {
            return invalid(format!(
                "pull_batch {} outside 1..={MAX_PULL_BATCH}",
                self.pull_batch
            ));
        }
        // Not zero: an idle queue would be pulled in a loop.
        if self.pull_wait < Duration::from_millis(1) || self.pull_wait > MAX_PULL_WAIT {
            return invalid(format!(
                "pull_wait {:?} outside [1ms, {MAX_PULL_WAIT:?}]",
                self.pull_wait
            ));
        }
        if !(1..=MAX_IN_FLIGHT_PER_QUEUE).contains(&self.consume_batch) {
            return invalid(format!(
                "consume_batch {} outside 1..={MAX_IN_FLIGHT_PER_QUEUE}",
                self.consume_batch
            ));
        }
        if !(1..=MAX_CONSUME_THREADS).contains(&self.consume_threads) {
            return invalid(format!(
                "consume_threads {} outside 1..={MAX_CONSUME_THREADS}",
                self.consume_threads
            ));
        }
        if let Some(interval) = self.auto_commit_interval {
            check_duration("auto_commit_interval", interval)?;
        }
        check_duration("rebalance_interval", self.rebalance_interval)?;
        if self.consume_retries > MAX_RETRIES {
            return invalid(format!(
                "consume_retries {} above {MAX_RETRIES}",
                self.consume_retries
            ));
        }
        if self.retry_pause > MAX_DURATION {
            return invalid(format!(
                "retry_pause {:?} above {MAX_DURATION:?}",
                self.retry_pause
            ));
        }
        if self.offset_store_path.is_some() && self.mode != ConsumeMode::Broadcasting {
            return invalid(
                "offset_store_path is for broadcasting; a clustering group commits its \
                 offsets to the brokers"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// The most payload one produce request carries on a client with this frame limit.
pub fn max_request_payload_bytes(max_frame_bytes: usize) -> usize {
    max_frame_bytes.saturating_sub(PRODUCE_HEADER_RESERVE_BYTES)
}

fn check_duration(name: &str, value: Duration) -> Result<()> {
    if value.is_zero() || value > MAX_DURATION {
        return invalid(format!("{name} {value:?} outside (0, {MAX_DURATION:?}]"));
    }
    Ok(())
}

fn invalid<T>(reason: String) -> Result<T> {
    Err(ClientError::InvalidConfig { reason })
}

/// `host@pid@start_ms`: the host name if the environment says it, else `client`.
fn default_client_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty() && host.len() <= 64)
        .unwrap_or_else(|| "client".to_owned());
    let started_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    // Two clients of one process started in the same millisecond still differ.
    let nonce: u16 = rand::random();
    format!("{host}@{}@{started_ms}-{nonce:04x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let client = ClientConfig::new(["127.0.0.1:9876"]);
        client.validate().unwrap();
        ProducerConfig::new(client.clone())
            .validate_for(&client)
            .unwrap();
        PushConsumerConfig::new(client.clone(), "billing", "orders")
            .validate()
            .unwrap();
        assert!(client.client_id.len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_setting() {
        let client = ClientConfig::new(["127.0.0.1:9876"]);
        let bad_client = ClientConfig {
            max_frame_bytes: 10,
            ..client.clone()
        };
        assert!(bad_client
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_frame_bytes"));
        let bad_timeout = ClientConfig {
            request_timeout: Duration::ZERO,
            ..client.clone()
        };
        assert!(bad_timeout.validate().is_err());
        let producer = ProducerConfig::new(client.clone());
        for (bad, setting) in [
            (
                ProducerConfig {
                    batch_bytes: 10,
                    ..producer.clone()
                },
                "batch_bytes",
            ),
            (
                ProducerConfig {
                    max_pending_bytes: 1 << 20,
                    ..producer.clone()
                },
                "max_message_bytes",
            ),
            (
                ProducerConfig {
                    max_in_flight_requests_per_broker: 0,
                    ..producer.clone()
                },
                "max_in_flight_requests_per_broker",
            ),
            (
                ProducerConfig {
                    producer_group: String::new(),
                    ..producer.clone()
                },
                "producer_group",
            ),
        ] {
            let error = bad.validate_for(&client).unwrap_err().to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        }
        let consumer = PushConsumerConfig::new(client.clone(), "billing", "orders");
        for (bad, setting) in [
            (
                PushConsumerConfig {
                    consumer_group: String::new(),
                    ..consumer.clone()
                },
                "consumer_group",
            ),
            (
                PushConsumerConfig {
                    max_in_flight_per_queue: 0,
                    ..consumer.clone()
                },
                "max_in_flight_per_queue",
            ),
            (
                PushConsumerConfig {
                    pull_wait: MAX_PULL_WAIT + Duration::from_millis(1),
                    ..consumer.clone()
                },
                "pull_wait",
            ),
            (
                PushConsumerConfig {
                    auto_commit_interval: Some(Duration::ZERO),
                    ..consumer.clone()
                },
                "auto_commit_interval",
            ),
            (
                PushConsumerConfig {
                    offset_store_path: Some("offsets".into()),
                    ..consumer.clone()
                },
                "offset_store_path",
            ),
        ] {
            let error = bad.validate().unwrap_err().to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        }
        // Manual commits and a zero retry pause are fine.
        PushConsumerConfig {
            auto_commit_interval: None,
            retry_pause: Duration::ZERO,
            ..consumer
        }
        .validate()
        .unwrap();
    }
}
