//! Consumer offsets: commit ([`Opcode::CommitConsumerOffset`](crate::Opcode)) and query
//! ([`Opcode::QueryConsumerOffset`](crate::Opcode)) where a consumer group has got to in a
//! queue. The offset is the next one the group will consume. The broker keeps these per
//! shard, beside the queues they belong to.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{QueueId, QueueOffset};

/// Commit consumer offset request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct CommitConsumerOffsetRequest {
    /// The consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue of the topic.
    pub queue_id: QueueId,
    /// The next offset the group will consume (at most the queue's end, else
    /// [`ErrorCode::OffsetOutOfRange`](crate::ErrorCode::OffsetOutOfRange)).
    pub offset: QueueOffset,
}

/// Commit consumer offset response header (nothing to say beyond the error code).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct CommitConsumerOffsetResponse {}

/// Query consumer offset request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct QueryConsumerOffsetRequest {
    /// The consumer group.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue of the topic.
    pub queue_id: QueueId,
}

/// Query consumer offset response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct QueryConsumerOffsetResponse {
    /// The committed offset, or `None` if the group never committed one for this queue
    /// (the client then applies its "consume from" policy).
    pub offset: Option<QueueOffset>,
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    samples.add(CommitConsumerOffsetRequest {
        consumer_group: "billing".into(),
        topic: "orders".into(),
        queue_id: QueueId(2),
        offset: QueueOffset(77),
    });
    samples.add(CommitConsumerOffsetResponse {});
    samples.add(QueryConsumerOffsetRequest {
        consumer_group: "billing".into(),
        topic: "orders".into(),
        queue_id: QueueId(2),
    });
    samples.add(QueryConsumerOffsetResponse {
        offset: Some(QueueOffset(77)),
    });
    samples.add(QueryConsumerOffsetResponse { offset: None });
}

#[cfg(test)]
mod tests {
    #[test]
    fn consumer_offset_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 5);
    }
}
