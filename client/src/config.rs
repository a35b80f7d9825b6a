//! Configuration: [`ClientConfig`] (what every producer, consumer and admin handle of one
//! client shares: name servers, client id, timeouts, connection limits) and
//! [`ProducerConfig`] (batching, memory bound, retries).
//!
//! Plain structs with public fields and documented defaults, so a caller writes
//! `ProducerConfig { linger: Duration::ZERO, ..ProducerConfig::new(client) }`. Every limit
//! has a named default and a range checked by `validate` when a client or producer starts;
//! the relations between the defaults are checked at compile time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use spillway_storage::record::ABSOLUTE_MAX_RECORD_BYTES;
use spillway_wire::message::{FlushExpectation, MAX_PRODUCE_PARTS};
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
    /// Produce requests of this producer in flight to one broker at once. Default
    /// [`DEFAULT_MAX_IN_FLIGHT_REQUESTS_PER_BROKER`].
    pub max_in_flight_requests_per_broker: usize,
    /// When brokers acknowledge. Default [`FlushExpectation::BrokerDefault`].
    pub flush: FlushExpectation,
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
    }
}
