//! Pull ([`Opcode::Pull`](crate::Opcode::Pull)): read records of one queue from an offset.
//!
//! The broker answers with up to `max_messages` records (and about `max_bytes`; one record
//! is returned whatever its size, as long as it fits in a frame) as the response's payload:
//! the stored bytes themselves, stamped, in the storage record format. With nothing new
//! at `offset`, the broker holds the request up to `max_wait_ms` (long polling) and answers
//! as soon as records arrive. A pull can also carry the consumer's offset commit, saving a
//! round trip.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::{QueueId, QueueOffset};

/// Pull request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PullRequest {
    /// The consumer group pulling.
    pub consumer_group: String,
    /// Topic.
    pub topic: String,
    /// Queue of the topic.
    pub queue_id: QueueId,
    /// First offset wanted.
    pub offset: QueueOffset,
    /// At most this many records.
    pub max_messages: u32,
    /// About this many bytes at most (one record is always returned if there is one).
    pub max_bytes: u32,
    /// Which tags to return: empty or `*` for all, else tags separated by `||`
    /// (`paid || refunded`). Records with other tags are skipped (and `next_offset` moves
    /// past them).
    pub tag_expression: String,
    /// How long the broker may hold the request waiting for new records; 0 = answer now.
    pub max_wait_ms: u32,
    /// If set, also commit this offset for the group (as `CommitConsumerOffset` would).
    pub commit_offset: Option<QueueOffset>,
}

/// How a pull went.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub enum PullStatus {
    /// Records (possibly none, if all were filtered out by tag) up to `next_offset`.
    Found,
    /// Nothing at or after the offset yet, even after waiting.
    NoNewMessages,
    /// The offset was deleted by retention; continue at `next_offset`, the queue's minimum.
    OffsetTooSmall,
    /// The offset is past the queue's end; continue at `next_offset`, the queue's end.
    OffsetTooLarge,
}

/// Pull response header; the payload is the records.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct PullResponse {
    /// How it went.
    pub status: PullStatus,
    /// Where the next pull should start.
    pub next_offset: QueueOffset,
    /// The queue's minimum offset now.
    pub min_offset: QueueOffset,
    /// The queue's end (the next offset to be written) now.
    pub max_offset: QueueOffset,
    /// Records in the payload.
    pub record_count: u32,
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    samples.add(PullRequest {
        consumer_group: "billing".into(),
        topic: "orders".into(),
        queue_id: QueueId(7),
        offset: QueueOffset(123_456),
        max_messages: 32,
        max_bytes: 1 << 20,
        tag_expression: "paid || refunded".into(),
        max_wait_ms: 15_000,
        commit_offset: None,
    });
    samples.add(PullRequest {
        consumer_group: String::new(),
        topic: "t".into(),
        queue_id: QueueId(0),
        offset: QueueOffset(0),
        max_messages: 1,
        max_bytes: 0,
        tag_expression: "*".into(),
        max_wait_ms: 0,
        commit_offset: Some(QueueOffset(u64::MAX)),
    });
    for status in [
        PullStatus::Found,
        PullStatus::NoNewMessages,
        PullStatus::OffsetTooSmall,
        PullStatus::OffsetTooLarge,
    ] {
        samples.add_with_payload(
            PullResponse {
                status,
                next_offset: QueueOffset(130),
                min_offset: QueueOffset(100),
                max_offset: QueueOffset(200),
                record_count: 3,
            },
            b"three stored records, as stored",
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pull_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 6);
    }
}
