//! Topic administration: create ([`Opcode::CreateTopic`](crate::Opcode)), delete
//! ([`Opcode::DeleteTopic`](crate::Opcode)) and list ([`Opcode::ListTopics`](crate::Opcode))
//! topics; and [`TopicConfig`] / [`ShardLayout`], which brokers also register with the name
//! servers so that every client can compute which shard owns a queue.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{QueueId, ShardId};

/// How a topic's queues are spread over a broker's shards. `queue -> shard` is a pure
/// function of this and the broker's shard count ([`ShardLayout::shard_for`]), so every
/// shard and every client computes the same answer.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub enum ShardLayout {
    /// Queue `q` lives on shard `q mod shard_count`.
    RoundRobin,
    /// Queue `q` lives on shard `pinned[q]` (one entry per queue, from the config file).
    Pinned(Vec<ShardId>),
}

impl ShardLayout {
    /// The shard owning `queue_id` on a broker with `shard_count` shards, or `None` if the
    /// layout does not cover the queue or names a shard the broker does not have.
    pub fn shard_for(&self, queue_id: QueueId, shard_count: u16) -> Option<ShardId> {
        if shard_count == 0 {
            return None;
        }
        let shard = match self {
            ShardLayout::RoundRobin => {
                // The remainder is below shard_count, a u16.
                ShardId((queue_id.0 % u32::from(shard_count)) as u16)
            }
            ShardLayout::Pinned(pinned) => *pinned.get(usize::try_from(queue_id.0).ok()?)?,
        };
        (shard.0 < shard_count).then_some(shard)
    }
}

/// A topic as a broker holds it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct TopicConfig {
    /// Topic name.
    pub topic: String,
    /// Number of queues: 0 .. queue_count.
    pub queue_count: u32,
    /// Which shard owns each queue.
    pub shard_layout: ShardLayout,
}

/// Create topic request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CreateTopicRequest {
    /// The topic to create ([`ErrorCode::TopicExists`](crate::ErrorCode::TopicExists) if
    /// it does).
    pub config: TopicConfig,
}

/// Create topic response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct CreateTopicResponse {}

/// Delete topic request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct DeleteTopicRequest {
    /// The topic to delete, with its queues and their stored messages.
    pub topic: String,
}

/// Delete topic response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct DeleteTopicResponse {}

/// List topics request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct ListTopicsRequest {}

/// List topics response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ListTopicsResponse {
    /// Every topic (of the broker asked, or known to the name server asked).
    pub topics: Vec<TopicConfig>,
}

#[cfg(test)]
pub(super) fn sample_topic(topic: &str, queue_count: u32, pinned: bool) -> TopicConfig {
    TopicConfig {
        topic: topic.into(),
        queue_count,
        shard_layout: if pinned {
            ShardLayout::Pinned((0..queue_count).map(|q| ShardId(q as u16 % 2)).collect())
        } else {
            ShardLayout::RoundRobin
        },
    }
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    samples.add(CreateTopicRequest {
        config: sample_topic("orders", 16, false),
    });
    samples.add(CreateTopicRequest {
        config: sample_topic("payments", 4, true),
    });
    samples.add(CreateTopicResponse {});
    samples.add(DeleteTopicRequest {
        topic: "orders".into(),
    });
    samples.add(DeleteTopicResponse {});
    samples.add(ListTopicsRequest {});
    samples.add(ListTopicsResponse {
        topics: vec![
            sample_topic("orders", 16, false),
            sample_topic("payments", 4, true),
        ],
    });
    samples.add(ListTopicsResponse { topics: vec![] });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        samples(&mut collected);
        assert_eq!(collected.frames.len(), 8);
    }

    #[test]
    fn round_robin_spreads_queues_over_shards() {
        let layout = ShardLayout::RoundRobin;
        let shards: Vec<u16> = (0..6)
            .map(|q| layout.shard_for(QueueId(q), 4).unwrap().0)
            .collect();
        assert_eq!(shards, [0, 1, 2, 3, 0, 1]);
        assert_eq!(layout.shard_for(QueueId(1), 0), None);
    }

    #[test]
    fn pinned_layout_names_each_queue_shard_and_refuses_unknown_ones() {
        let layout = ShardLayout::Pinned(vec![ShardId(1), ShardId(0), ShardId(5)]);
        assert_eq!(layout.shard_for(QueueId(0), 2), Some(ShardId(1)));
        assert_eq!(layout.shard_for(QueueId(1), 2), Some(ShardId(0)));
        assert_eq!(layout.shard_for(QueueId(2), 2), None, "shard 5 of 2");
        assert_eq!(layout.shard_for(QueueId(3), 2), None, "queue not covered");
    }
}
