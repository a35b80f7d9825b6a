//! [`PullConsumer`]: reads a queue from an offset the caller chooses, and keeps the
//! consumer group's committed offsets on the brokers.
//!
//! The caller owns the loop (which queues, from where, how often); this type only does
//! each step right: it finds the queue's broker from the route (the master for offset
//! commits and queries, any live member for reads), long-polls with the pull's own wait
//! added to the request timeout, verifies every record it returns (structure and both
//! CRCs), and hands out bodies as slices of the response buffer. A failure that suggests
//! the route moved (lost connection, not master, unknown topic on that broker) refreshes
//! the route and tries once more.
//!
//! Every operation has a blocking form and an `_async` form built on the same future.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use spillway_wire::message::{
    CommitConsumerOffsetRequest, CommitConsumerOffsetResponse, GetQueueOffsetsRequest,
    GetQueueOffsetsResponse, PullRequest, PullResponse, PullStatus, QueryConsumerOffsetRequest,
    QueryConsumerOffsetResponse, SearchOffsetByTimestampRequest, SearchOffsetByTimestampResponse,
};
use spillway_wire::{QueueId, QueueOffset};

use crate::client::{Client, ClientInner};
use crate::config::{ClientConfig, MAX_NAME_BYTES};
use crate::connection::decode_response;
use crate::error::{ClientError, Result};
use crate::message::{parse_records, MessageQueue, ReceivedMessage};
use crate::route::TopicRoute;

/// Default [`PullConsumer::max_pull_bytes`]: about this many bytes of records per pull.
pub const DEFAULT_MAX_PULL_BYTES: u32 = 4 << 20;

/// What one pull returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullResult {
    /// How it went.
    pub status: PullStatus,
    /// Where the next pull should start.
    pub next_offset: u64,
    /// The queue's minimum offset now.
    pub min_offset: u64,
    /// The queue's end (the offset the next message will get) now.
    pub max_offset: u64,
    /// The records, in offset order (fewer than `next_offset - offset` if some were
    /// filtered out by tag).
    pub messages: Vec<ReceivedMessage>,
}

/// Reads queues and keeps a consumer group's offsets (see the module docs). Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct PullConsumer {
    client: Client,
    consumer_group: Arc<str>,
    max_pull_bytes: u32,
}

/// Which member of a broker group an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Member {
    /// The master (writes, consumer offsets).
    Master,
    /// The master, else a replica (reads).
    Any,
}

/// Where an operation on a queue goes: its broker's address, and the broker shard owning
/// the queue (requests go on a connection bound to it; `None` if the route did not say).
pub(crate) struct QueueBroker {
    pub(crate) address: String,
    pub(crate) shard: Option<u16>,
}

/// The address of `queue`'s broker group in `route`, and the queue's shard there.
fn address_of(route: &TopicRoute, queue: &MessageQueue, member: Member) -> Result<QueueBroker> {
    let unavailable = |reason| ClientError::BrokerUnavailable {
        topic: queue.topic.clone(),
        broker_name: queue.broker_name.clone(),
        reason,
    };
    let broker = route
        .broker(&queue.broker_name)
        .ok_or_else(|| unavailable("the topic's route does not list this broker group"))?;
    let address = match member {
        Member::Master => broker.master_address(),
        Member::Any => broker.read_address(),
    };
    let address =
        address.ok_or_else(|| unavailable("no live member of the group can serve this"))?;
    Ok(QueueBroker {
        address: address.to_owned(),
        shard: broker.shard_for(queue.queue_id),
    })
}

/// Runs `attempt` against `queue`'s broker (and shard); if it fails in a way that suggests
/// the route moved, refreshes the route and runs it once more.
pub(crate) async fn on_queue_broker<T, F, Fut>(
    client: &ClientInner,
    queue: &MessageQueue,
    member: Member,
    attempt: F,
) -> Result<T>
where
    F: Fn(QueueBroker) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let route = client.route(&queue.topic).await?;
    let first = attempt(address_of(&route, queue, member)?).await;
    match first {
        Err(error) if error.suggests_route_change() => {
            tracing::debug!(%error, %queue, "refreshing the route and trying again");
            let route = client.refresh_route(&queue.topic).await?;
            attempt(address_of(&route, queue, member)?).await
        }
        other => other,
    }
}

/// The minimum and maximum offsets of `queue`.
pub(crate) async fn queue_offsets(
    client: &ClientInner,
    queue: &MessageQueue,
) -> Result<(u64, u64)> {
    on_queue_broker(client, queue, Member::Any, |broker| async move {
        let address = &broker.address;
        let request = GetQueueOffsetsRequest {
            topic: queue.topic.clone(),
            queue_id: QueueId(queue.queue_id),
        };
        let frame = client
            .call_bound(address, broker.shard, &request, Duration::ZERO)
            .await?;
        let response =
            decode_response::<GetQueueOffsetsResponse>(&frame, address, "queue offsets")?;
        Ok((response.min_offset.0, response.max_offset.0))
    })
    .await
}

/// The offset `consumer_group` committed on `queue`, if any.
pub(crate) async fn committed_offset(
    client: &ClientInner,
    consumer_group: &str,
    queue: &MessageQueue,
) -> Result<Option<u64>> {
    on_queue_broker(client, queue, Member::Master, |broker| async move {
        let address = &broker.address;
        let request = QueryConsumerOffsetRequest {
            consumer_group: consumer_group.to_owned(),
            topic: queue.topic.clone(),
            queue_id: QueueId(queue.queue_id),
        };
        let frame = client
            .call_bound(address, broker.shard, &request, Duration::ZERO)
            .await?;
        let response =
            decode_response::<QueryConsumerOffsetResponse>(&frame, address, "query offset")?;
        Ok(response.offset.map(|offset| offset.0))
    })
    .await
}

impl PullConsumer {
    /// A consumer of `consumer_group` on a new client made from `config`.
    pub fn new(config: ClientConfig, consumer_group: impl Into<String>) -> Result<PullConsumer> {
        let client = Client::new(config)?;
        PullConsumer::with_client(&client, consumer_group)
    }

    /// A consumer of `consumer_group` on a running client (sharing its connections).
    pub fn with_client(client: &Client, consumer_group: impl Into<String>) -> Result<PullConsumer> {
        let consumer_group = consumer_group.into();
        if consumer_group.is_empty() || consumer_group.len() > MAX_NAME_BYTES {
            return Err(ClientError::InvalidConfig {
                reason: format!(
                    "consumer group must be 1 to {MAX_NAME_BYTES} bytes, not {}",
                    consumer_group.len()
                ),
            });
        }
        let max_pull_bytes = u32::try_from(client.config().max_frame_bytes / 2)
            .unwrap_or(u32::MAX)
            .min(DEFAULT_MAX_PULL_BYTES);
        Ok(PullConsumer {
            client: client.clone(),
            consumer_group: Arc::from(consumer_group),
            max_pull_bytes,
        })
    }

    /// The same consumer asking for about `max_pull_bytes` of records per pull (at most
    /// half the frame limit; one record is returned whatever its size).
    pub fn with_max_pull_bytes(mut self, max_pull_bytes: u32) -> PullConsumer {
        let frame_half =
            u32::try_from(self.client.config().max_frame_bytes / 2).unwrap_or(u32::MAX);
        self.max_pull_bytes = max_pull_bytes.clamp(1, frame_half);
        self
    }

    /// About how many bytes of records one pull asks for.
    pub fn max_pull_bytes(&self) -> u32 {
        self.max_pull_bytes
    }

    /// The client it runs on.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its consumer group.
    pub fn consumer_group(&self) -> &str {
        &self.consumer_group
    }

    /// Every queue of `topic`, group by group (from the route; blocking).
    pub fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>> {
        Ok(self.client.topic_route(topic)?.queues())
    }

    /// [`PullConsumer::queues`] as a future.
    pub fn queues_async(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Vec<MessageQueue>>> + Send + 'static {
        let route = self.client.topic_route_async(topic);
        async move { Ok(route.await?.queues()) }
    }

    /// Pulls up to `max_messages` records of `queue` from `offset` whose tag matches
    /// `tag_expression` (`*` or empty for all, else tags separated by `||`), waiting up to
    /// `max_wait` for new records if there are none (blocking).
    pub fn pull(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max_messages: u32,
        max_wait: Duration,
        tag_expression: &str,
    ) -> Result<PullResult> {
        futures_lite::future::block_on(self.pull_async(
            queue,
            offset,
            max_messages,
            max_wait,
            tag_expression,
        ))
    }

    /// [`PullConsumer::pull`] as a future.
    pub fn pull_async(
        &self,
        queue: &MessageQueue,
        offset: u64,
        max_messages: u32,
        max_wait: Duration,
        tag_expression: &str,
    ) -> impl Future<Output = Result<PullResult>> + Send + 'static {
        let client = self.client.inner.clone();
        let consumer_group = self.consumer_group.clone();
        let queue = queue.clone();
        let tag_expression = tag_expression.to_owned();
        let max_bytes = self.max_pull_bytes;
        // Whole milliseconds, at most u32::MAX (the broker caps it at its own limit).
        let max_wait_ms = u32::try_from(max_wait.as_millis()).unwrap_or(u32::MAX);
        async move {
            let topic: Arc<str> = Arc::from(queue.topic.as_str());
            let broker_name: Arc<str> = Arc::from(queue.broker_name.as_str());
            let request = PullRequest {
                consumer_group: consumer_group.to_string(),
                topic: queue.topic.clone(),
                queue_id: QueueId(queue.queue_id),
                offset: QueueOffset(offset),
                max_messages,
                max_bytes,
                tag_expression,
                max_wait_ms,
                commit_offset: None,
            };
            let request = &request;
            let client = &*client;
            let topic = &topic;
            let broker_name = &broker_name;
            let queue = &queue;
            on_queue_broker(client, queue, Member::Any, |broker| async move {
                let address = &broker.address;
                let extra_wait = Duration::from_millis(u64::from(max_wait_ms));
                let frame = client
                    .call_bound(address, broker.shard, request, extra_wait)
                    .await?;
                let response = decode_response::<PullResponse>(&frame, address, "pull")?;
                let messages =
                    parse_records(frame.payload(), topic, broker_name, queue.queue_id, address)?;
                if messages.len() != response.record_count as usize {
                    return Err(ClientError::bad_response(
                        address,
                        format!(
                            "pull of {queue} says {} records and carries {}",
                            response.record_count,
                            messages.len()
                        ),
                    ));
                }
                Ok(PullResult {
                    status: response.status,
                    next_offset: response.next_offset.0,
                    min_offset: response.min_offset.0,
                    max_offset: response.max_offset.0,
                    messages,
                })
            })
            .await
        }
    }

    /// Commits `offset` (the next offset the group will consume) for `queue` (blocking).
    pub fn commit_offset(&self, queue: &MessageQueue, offset: u64) -> Result<()> {
        futures_lite::future::block_on(self.commit_offset_async(queue, offset))
    }

    /// [`PullConsumer::commit_offset`] as a future.
    pub fn commit_offset_async(
        &self,
        queue: &MessageQueue,
        offset: u64,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        let client = self.client.inner.clone();
        let request = CommitConsumerOffsetRequest {
            consumer_group: self.consumer_group.to_string(),
            topic: queue.topic.clone(),
            queue_id: QueueId(queue.queue_id),
            offset: QueueOffset(offset),
        };
        let queue = queue.clone();
        async move {
            let client = &*client;
            let request = &request;
            on_queue_broker(client, &queue, Member::Master, |broker| async move {
                let address = &broker.address;
                let frame = client
                    .call_bound(address, broker.shard, request, Duration::ZERO)
                    .await?;
                decode_response::<CommitConsumerOffsetResponse>(&frame, address, "commit offset")
                    .map(drop)
            })
            .await
        }
    }

    /// The offset the group committed for `queue`, if it ever did (blocking).
    pub fn committed_offset(&self, queue: &MessageQueue) -> Result<Option<u64>> {
        futures_lite::future::block_on(self.committed_offset_async(queue))
    }

    /// [`PullConsumer::committed_offset`] as a future.
    pub fn committed_offset_async(
        &self,
        queue: &MessageQueue,
    ) -> impl Future<Output = Result<Option<u64>>> + Send + 'static {
        let client = self.client.inner.clone();
        let consumer_group = self.consumer_group.clone();
        let queue = queue.clone();
        async move { committed_offset(&client, &consumer_group, &queue).await }
    }

    /// The queue's minimum and maximum offsets (the max is the offset the next message
    /// will get) (blocking).
    pub fn queue_offsets(&self, queue: &MessageQueue) -> Result<(u64, u64)> {
        futures_lite::future::block_on(self.queue_offsets_async(queue))
    }

    /// [`PullConsumer::queue_offsets`] as a future.
    pub fn queue_offsets_async(
        &self,
        queue: &MessageQueue,
    ) -> impl Future<Output = Result<(u64, u64)>> + Send + 'static {
        let client = self.client.inner.clone();
        let queue = queue.clone();
        async move { queue_offsets(&client, &queue).await }
    }

    /// The first offset of `queue` stored at or after `timestamp_ms` (ms since the Unix
    /// epoch, compared with the broker's store time); the queue's end if none (blocking).
    pub fn offset_for_timestamp(&self, queue: &MessageQueue, timestamp_ms: i64) -> Result<u64> {
        futures_lite::future::block_on(self.offset_for_timestamp_async(queue, timestamp_ms))
    }

    /// [`PullConsumer::offset_for_timestamp`] as a future.
    pub fn offset_for_timestamp_async(
        &self,
        queue: &MessageQueue,
        timestamp_ms: i64,
    ) -> impl Future<Output = Result<u64>> + Send + 'static {
        let client = self.client.inner.clone();
        let request = SearchOffsetByTimestampRequest {
            topic: queue.topic.clone(),
            queue_id: QueueId(queue.queue_id),
            timestamp_ms,
        };
        let queue = queue.clone();
        async move {
            let client = &*client;
            let request = &request;
            on_queue_broker(client, &queue, Member::Any, |broker| async move {
                let address = &broker.address;
                let frame = client
                    .call_bound(address, broker.shard, request, Duration::ZERO)
                    .await?;
                let response = decode_response::<SearchOffsetByTimestampResponse>(
                    &frame,
                    address,
                    "offset for timestamp",
                )?;
                Ok(response.offset.0)
            })
            .await
        }
    }
}
