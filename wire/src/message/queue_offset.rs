//! Queue offsets: a queue's range ([`Opcode::GetQueueOffsets`](crate::Opcode)) and the
//! offset for a time ([`Opcode::SearchOffsetByTimestamp`](crate::Opcode)), for consumers
//! choosing where to start and for admin tools.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{QueueId, QueueOffset};

/// Get queue offsets request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetQueueOffsetsRequest {
    /// Topic.
    pub topic: String,
    /// Queue of the topic.
    pub queue_id: QueueId,
}

/// Get queue offsets response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetQueueOffsetsResponse {
    /// The oldest offset still stored (retention moves it up).
    pub min_offset: QueueOffset,
    /// The queue's end: the offset the next record will get.
    pub max_offset: QueueOffset,
}

/// Search offset by timestamp request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SearchOffsetByTimestampRequest {
    /// Topic.
    pub topic: String,
    /// Queue of the topic.
    pub queue_id: QueueId,
    /// Milliseconds since the Unix epoch, compared with the broker's store time.
    pub timestamp_ms: i64,
}

/// Search offset by timestamp response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct SearchOffsetByTimestampResponse {
    /// The first offset stored at or after the time (the queue's end if none).
    pub offset: QueueOffset,
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    samples.add(GetQueueOffsetsRequest {
        topic: "orders".into(),
        queue_id: QueueId(1),
    });
    samples.add(GetQueueOffsetsResponse {
        min_offset: QueueOffset(10),
        max_offset: QueueOffset(2_000_000),
    });
    samples.add(SearchOffsetByTimestampRequest {
        topic: "orders".into(),
        queue_id: QueueId(1),
        timestamp_ms: 1_700_000_000_000,
    });
    samples.add(SearchOffsetByTimestampRequest {
        topic: "orders".into(),
        queue_id: QueueId(1),
        timestamp_ms: i64::MIN,
    });
    samples.add(SearchOffsetByTimestampResponse {
        offset: QueueOffset(1_500),
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn queue_offset_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 5);
    }
}
