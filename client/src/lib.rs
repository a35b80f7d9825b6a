//! The Spillway client library: a [`Producer`] with automatic batching, a [`PullConsumer`],
//! a [`PushConsumer`] (handler per message or batch, consumer groups with rebalancing) and
//! an [`Admin`] handle, sharing one [`Client`] (connections, routes, heartbeats).
//!
//! # Why it is built this way
//!
//! **No runtime imposed.** The client does its I/O on its own threads with std blocking
//! sockets: per connection one writer and one reader thread, per producer one sender
//! thread, per client one maintenance thread. Every async method returns a `Send + 'static`
//! future that waits on flume's runtime-agnostic `recv_async`, so it works under tokio,
//! async-std, or `futures_lite::future::block_on`; every blocking method is the same steps
//! with a blocking `recv`. A caller's runtime never runs client I/O, and a blocking caller
//! needs no runtime at all.
//!
//! **Encode once, on the caller's thread.** A message is encoded in the storage record
//! format (`spillway_storage::record::RecordBuilder`, with its CRC) straight into the
//! batch buffer of the queue it goes to, by the thread that sends it; the broker stores
//! those bytes. CRC work spreads over the callers, and a send costs no allocation beyond
//! its reply channel and no syscall.
//!
//! **Batch by queue, request by broker.** Messages gather per queue for up to `linger` or
//! `batch_bytes`; all of a broker's batches go in one multi-part produce request, and a
//! connection's writer puts everything queued into one vectored write. While requests are
//! in flight the next batches keep growing, so batch size follows the load.
//!
//! **One connection per peer, many requests in flight.** Producers, consumers and admin
//! calls of a client share one TCP connection per broker and per name server; responses
//! are matched to requests by id, so a long poll never holds up a produce. A broken
//! connection fails everything pending on it with a typed [`ClientError`] and is replaced
//! on next use.
//!
//! **Bounded.** Unacknowledged bytes per producer (`max_pending_bytes`: sends wait),
//! requests in flight per connection (callers wait), produce requests in flight per broker,
//! frame size, message size, messages pulled and not handled per push-consumed queue
//! (`max_in_flight_per_queue`: pulls wait).
//!
//! **Groups without a coordinator.** A clustering group's members find each other through
//! the brokers (heartbeats in, sorted member lists out) and each computes the whole
//! group's split of the sorted queues the same way, so nothing elects a leader. Delivery
//! is at least once: a queue changing hands may have a few messages handled twice, never
//! skipped (see `push_consumer.rs`).
//!
//! # Map
//!
//! | module | owns |
//! |---|---|
//! | `client.rs` | [`Client`]: shared state, maintenance thread (route refresh, heartbeats) |
//! | `config.rs` | [`ClientConfig`], [`ProducerConfig`], defaults and their ranges |
//! | `connection.rs` | one connection: writer and reader threads, request matching, timeouts; the pool |
//! | `budget.rs` | a limit that blocking threads and futures can both wait on |
//! | `route.rs` | [`TopicRoute`], the route cache and name server lookups |
//! | `message.rs` | [`Message`], [`SendResult`], [`MessageQueue`], [`ReceivedMessage`] |
//! | `producer.rs` | [`Producer`]: the send paths, queue choice, memory bound |
//! | `batch.rs` | per-queue batch accumulators |
//! | `sender.rs` | the producer's sender thread: requests, answers, retries, flush, close |
//! | `request_timings.rs` | [`RequestTimings`]: a producer's requests timed per stage |
//! | `pull_consumer.rs` | [`PullConsumer`] |
//! | `push_consumer.rs` | [`PushConsumer`]: rebalance, pull and consume threads; commits; handover |
//! | `process_queue.rs` | one owned queue: messages pulled and not handled, the committable offset |
//! | `rebalance.rs` | group members from the brokers, [`allocate_average`] |
//! | `local_offsets.rs` | a broadcasting consumer's offsets, in memory and in a file |
//! | `admin.rs` | [`Admin`] |
//! | `error.rs` | [`ClientError`] |
//!
//! # Example
//!
//! ```no_run
//! use spillway_client::{ClientConfig, Message, Producer, ProducerConfig, PullConsumer};
//! use std::time::Duration;
//!
//! let config = ClientConfig::new(["127.0.0.1:9876"]);
//! let producer = Producer::start(ProducerConfig::new(config.clone()))?;
//! let sent = producer.send(Message::new("orders", "order 1").with_tag("paid"))?;
//!
//! let consumer = PullConsumer::new(config, "billing")?;
//! let queue = spillway_client::MessageQueue::new("orders", &*sent.broker_name, sent.queue_id);
//! let pulled = consumer.pull(&queue, sent.offset, 32, Duration::from_secs(1), "*")?;
//! assert_eq!(pulled.messages[0].body, "order 1");
//! consumer.commit_offset(&queue, pulled.next_offset)?;
//! producer.close()?;
//! # Ok::<(), spillway_client::ClientError>(())
//! ```
//!
//! A member of a clustering group, handed every message of its share of the queues:
//!
//! ```no_run
//! use spillway_client::{
//!     ClientConfig, ConsumeResult, MessageHandler, PushConsumer, PushConsumerConfig,
//! };
//!
//! let config = PushConsumerConfig::new(ClientConfig::new(["127.0.0.1:9876"]), "billing", "orders");
//! let consumer = PushConsumer::start(
//!     config,
//!     MessageHandler::per_message(|message| {
//!         println!("{} {}: {:?}", message.queue(), message.offset, message.body);
//!         ConsumeResult::Success
//!     }),
//! )?;
//! // ... later: finish the handlers, commit, leave the group.
//! consumer.shutdown()?;
//! # Ok::<(), spillway_client::ClientError>(())
//! ```

mod admin;
mod batch;
mod budget;
mod client;
mod config;
mod connection;
mod error;
mod local_offsets;
mod message;
mod outbox;
mod process_queue;
mod producer;
mod pull_consumer;
mod push_consumer;
mod rebalance;
mod request_timings;
mod route;
mod sender;

pub use admin::{Admin, ConsumerLag, QueueLag, TopicTarget};
pub use client::{Client, MIN_ROUTE_REFRESH_GAP};
pub use config::*;
pub use connection::{DEADLINE_SCAN_INTERVAL, MAX_READ_BYTES, MIN_READ_BYTES};
pub use error::{ClientError, Result};
pub use message::{Message, MessageQueue, ReceivedMessage, SendResult};
pub use outbox::{MAX_WRITE_BYTES, MAX_WRITE_FRAMES};
pub use producer::{Producer, ProducerStats};
pub use pull_consumer::{PullConsumer, PullResult, DEFAULT_MAX_PULL_BYTES};
pub use push_consumer::{
    CommitHandle, ConsumeResult, MessageHandler, PushConsumer, PushConsumerStats, PULL_RETRY_PAUSE,
};
pub use rebalance::allocate_average;
pub use request_timings::{RequestTimings, HIGHEST_STAGE_US};
pub use route::{BrokerRoute, TopicRoute};
pub use sender::{BROKER_PAUSE, PERMIT_RETRY_INTERVAL};

/// Wire types that appear in this crate's API, re-exported so callers need not depend on
/// `spillway-wire`.
pub use spillway_wire::message::{
    BrokerGroup, BrokerMember, ClusterInfo, ConsumeMode, ConsumerGroupMembership, FlushExpectation,
    PullStatus, ShardLayout, Subscription, TopicConfig,
};
pub use spillway_wire::{BrokerId, ErrorCode};
