//! [`Admin`]: topic administration and the cluster's state, for tools and tests: create and
//! delete topics on one broker or on every master of a cluster, list a broker's topics,
//! read the cluster layout from the name servers, a queue's offsets, a consumer group's lag
//! and members.
//!
//! Admin calls are rare and answered quickly, so they are blocking only and run one after
//! the other; they share the client's connections and routes like everything else.
//! Topic changes reach the name servers when the broker next registers (at once, for a
//! create or delete); routes cached by clients follow at their next refresh.

use std::time::Duration;

use spillway_wire::message::{
    ClusterInfo, CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    GetClusterInfoRequest, GetClusterInfoResponse, GetConsumerGroupMembersRequest,
    GetConsumerGroupMembersResponse, ListTopicsRequest, ListTopicsResponse, ShardLayout,
    TopicConfig,
};
use spillway_wire::BrokerId;

use crate::client::Client;
use crate::config::ClientConfig;
use crate::connection::decode_response;
use crate::error::{ClientError, Result};
use crate::message::MessageQueue;
use crate::pull_consumer::{committed_offset, queue_offsets};

/// Which brokers a topic change goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicTarget {
    /// One broker, by address (`host:port`).
    Broker(String),
    /// Every master of the named cluster, as the name servers list them.
    Cluster(String),
}

/// One queue's consumption state for a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueLag {
    /// The queue.
    pub queue: MessageQueue,
    /// The group's committed offset, if it committed one.
    pub committed: Option<u64>,
    /// The queue's minimum offset.
    pub min_offset: u64,
    /// The queue's end (the offset the next message will get).
    pub max_offset: u64,
    /// Messages the group has not consumed: `max_offset - committed`, or
    /// `max_offset - min_offset` if it never committed.
    pub lag: u64,
}

/// A consumer group's lag on a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerLag {
    /// Per queue, in route order.
    pub queues: Vec<QueueLag>,
    /// The sum of the queues' lags.
    pub total: u64,
}

/// Administration handle (see the module docs). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin handle on a new client made from `config`.
    pub fn new(config: ClientConfig) -> Result<Admin> {
        Ok(Admin {
            client: Client::new(config)?,
        })
    }

    /// An admin handle on a running client.
    pub fn with_client(client: &Client) -> Admin {
        Admin {
            client: client.clone(),
        }
    }

    /// The client it runs on.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The broker addresses `target` names.
    pub fn target_addresses(&self, target: &TopicTarget) -> Result<Vec<String>> {
        match target {
            TopicTarget::Broker(address) => Ok(vec![address.clone()]),
            TopicTarget::Cluster(cluster) => {
                let clusters = self.cluster_info()?;
                let info = clusters
                    .iter()
                    .find(|info| &info.cluster == cluster)
                    .ok_or_else(|| ClientError::InvalidConfig {
                        reason: format!("no name server knows a cluster named {cluster}"),
                    })?;
                Ok(info
                    .broker_groups
                    .iter()
                    .filter_map(|group| {
                        group
                            .members
                            .iter()
                            .find(|member| member.broker_id == BrokerId::MASTER)
                            .map(|member| member.address.clone())
                    })
                    .collect())
            }
        }
    }

    /// Creates `topic` with `queue_count` queues (round-robin over each broker's shards) on
    /// every broker `target` names; returns their addresses. Stops at the first refusal
    /// (e.g. [`spillway_wire::ErrorCode::TopicExists`]).
    pub fn create_topic(
        &self,
        target: &TopicTarget,
        topic: &str,
        queue_count: u32,
    ) -> Result<Vec<String>> {
        let addresses = self.target_addresses(target)?;
        let request = CreateTopicRequest {
            config: TopicConfig {
                topic: topic.to_owned(),
                queue_count,
                shard_layout: ShardLayout::RoundRobin,
            },
        };
        for address in &addresses {
            let frame = self.call(address, &request)?;
            decode_response::<CreateTopicResponse>(&frame, address, "create topic")?;
        }
        Ok(addresses)
    }

    /// Deletes `topic` (with its messages) on every broker `target` names; returns their
    /// addresses. Stops at the first refusal.
    pub fn delete_topic(&self, target: &TopicTarget, topic: &str) -> Result<Vec<String>> {
        let addresses = self.target_addresses(target)?;
        let request = DeleteTopicRequest {
            topic: topic.to_owned(),
        };
        for address in &addresses {
            let frame = self.call(address, &request)?;
            decode_response::<DeleteTopicResponse>(&frame, address, "delete topic")?;
        }
        Ok(addresses)
    }

    /// The topics of the broker at `broker_address`, sorted by name.
    pub fn list_topics(&self, broker_address: &str) -> Result<Vec<TopicConfig>> {
        let frame = self.call(broker_address, &ListTopicsRequest {})?;
        let mut topics =
            decode_response::<ListTopicsResponse>(&frame, broker_address, "list topics")?.topics;
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        Ok(topics)
    }

    /// Every cluster the name servers know, with their broker groups (asked of the name
    /// servers in turn until one answers).
    pub fn cluster_info(&self) -> Result<Vec<ClusterInfo>> {
        let name_servers = self.client.inner.routes.name_servers_in_turn();
        if name_servers.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let mut last_error = None;
        for address in &name_servers {
            let answer = self
                .call(address, &GetClusterInfoRequest {})
                .and_then(|frame| {
                    decode_response::<GetClusterInfoResponse>(&frame, address, "cluster info")
                });
            match answer {
                Ok(response) => return Ok(response.clusters),
                Err(error) => last_error = Some(error),
            }
        }
        Err(ClientError::NameServerUnreachable {
            last_error: last_error
                .map_or_else(|| "no answer".to_owned(), |error| error.to_string()),
        })
    }

    /// The minimum and maximum offsets of `queue`.
    pub fn queue_offsets(&self, queue: &MessageQueue) -> Result<(u64, u64)> {
        futures_lite::future::block_on(queue_offsets(&self.client.inner, queue))
    }

    /// How far `consumer_group` is behind on every queue of `topic`.
    pub fn consumer_lag(&self, consumer_group: &str, topic: &str) -> Result<ConsumerLag> {
        let route = self.client.topic_route(topic)?;
        let mut queues = Vec::new();
        let mut total = 0u64;
        for queue in route.queues() {
            let (min_offset, max_offset) = self.queue_offsets(&queue)?;
            let committed = futures_lite::future::block_on(committed_offset(
                &self.client.inner,
                consumer_group,
                &queue,
            ))?;
            let lag = max_offset.saturating_sub(committed.unwrap_or(min_offset));
            total += lag;
            queues.push(QueueLag {
                queue,
                committed,
                min_offset,
                max_offset,
                lag,
            });
        }
        Ok(ConsumerLag { queues, total })
    }

    /// The client ids the broker at `broker_address` counts as members of
    /// `consumer_group` (live heartbeats), sorted.
    pub fn consumer_group_members(
        &self,
        broker_address: &str,
        consumer_group: &str,
    ) -> Result<Vec<String>> {
        let request = GetConsumerGroupMembersRequest {
            consumer_group: consumer_group.to_owned(),
        };
        let frame = self.call(broker_address, &request)?;
        let mut members = decode_response::<GetConsumerGroupMembersResponse>(
            &frame,
            broker_address,
            "consumer group members",
        )?
        .client_ids;
        members.sort();
        Ok(members)
    }

    fn call<H: spillway_wire::WireHeader + Sync>(
        &self,
        address: &str,
        request: &H,
    ) -> Result<spillway_wire::Frame> {
        futures_lite::future::block_on(self.client.inner.call(address, request, Duration::ZERO))
    }
}
