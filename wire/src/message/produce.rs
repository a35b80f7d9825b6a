//! Produce ([`Opcode::Produce`](crate::Opcode::Produce)): record batches for one or more
//! queues in one frame.
//!
//! The payload is the batches, in the storage record format (`spillway_storage::record`),
//! laid end to end; each [`ProducePart`] names a queue and its byte range of the payload.
//! The broker validates, stamps and stores those bytes as they are (encode once); parts for
//! queues of different shards are split by owner ([`ArchivedProduceRequest::split_payload`]
//! gives each part its slice without copying). The response has one result per part, in
//! the request's order, so one full queue does not fail the others.

use bytes::Bytes;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::WireError;
use crate::ids::{QueueId, QueueOffset};

/// Most parts one produce request may carry.
pub const MAX_PRODUCE_PARTS: usize = 1024;

/// When the producer wants its acknowledgement.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub enum FlushExpectation {
    /// When the batch is durable as the broker's configured flush mode defines it
    /// (DURABILITY.md: after fdatasync in `sync` mode, after the write in `async` mode).
    BrokerDefault,
    /// Only after an fdatasync covers the batch, whatever the broker's flush mode; a broker
    /// that cannot get there within its flush timeout answers
    /// [`ErrorCode::FlushTimeout`](crate::ErrorCode::FlushTimeout).
    Sync,
}

/// Produce request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ProduceRequest {
    /// The producer group (for transactions and diagnostics).
    pub producer_group: String,
    /// When to acknowledge.
    pub flush: FlushExpectation,
    /// One per target queue, in payload order, ranges not overlapping;
    /// 1 to [`MAX_PRODUCE_PARTS`].
    pub parts: Vec<ProducePart>,
}

/// One queue's batch inside a produce payload.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ProducePart {
    /// Topic.
    pub topic: String,
    /// Queue of the topic.
    pub queue_id: QueueId,
    /// Records in the batch (the broker checks it against the batch).
    pub record_count: u32,
    /// Where the batch starts in the payload.
    pub payload_offset: u32,
    /// Length of the batch in bytes (not 0).
    pub payload_length: u32,
}

/// Produce response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ProduceResponse {
    /// One per request part, same order.
    pub parts: Vec<ProducePartResult>,
}

/// How one part of a produce request went.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ProducePartResult {
    /// [`ErrorCode`](crate::ErrorCode) number: 0 if this part was stored. Kept raw so a
    /// code unknown to the client still decodes (and counts as a failure).
    pub error_code: u16,
    /// Queue offset of the part's first record (its others follow densely); 0 on failure.
    pub first_offset: QueueOffset,
    /// Records stored.
    pub record_count: u32,
}

impl ProduceRequest {
    /// A request with one part covering the whole payload `batch`.
    pub fn single(
        producer_group: &str,
        topic: &str,
        queue_id: QueueId,
        record_count: u32,
        batch: &[u8],
        flush: FlushExpectation,
    ) -> ProduceRequest {
        ProduceRequest {
            producer_group: producer_group.to_owned(),
            flush,
            parts: vec![ProducePart {
                topic: topic.to_owned(),
                queue_id,
                record_count,
                payload_offset: 0,
                // A batch this large cannot be encoded anyway: the encoder refuses the frame.
                payload_length: u32::try_from(batch.len()).unwrap_or(u32::MAX),
            }],
        }
    }
}

/// One part of a produce request with its batch, sliced from the payload without a copy.
#[derive(Debug)]
pub struct PayloadPart<'a> {
    /// The part's header fields.
    pub part: &'a ArchivedProducePart,
    /// Its batch.
    pub batch: Bytes,
}

impl ArchivedProduceRequest {
    /// Checks the parts against `payload` (count within 1..=[`MAX_PRODUCE_PARTS`], each
    /// range non-empty, inside the payload and after the previous one) and slices each
    /// part's batch out of it.
    pub fn split_payload(&self, payload: &Bytes) -> Result<Vec<PayloadPart<'_>>, WireError> {
        if self.parts.is_empty() || self.parts.len() > MAX_PRODUCE_PARTS {
            return Err(WireError::BadPartCount {
                parts: self.parts.len(),
                max_parts: MAX_PRODUCE_PARTS,
            });
        }
        let mut previous_end = 0u64;
        let mut split = Vec::with_capacity(self.parts.len());
        for (index, part) in self.parts.iter().enumerate() {
            let offset = part.payload_offset.to_native();
            let length = part.payload_length.to_native();
            let end = u64::from(offset) + u64::from(length);
            let problem = if length == 0 {
                Some("is empty")
            } else if end > payload.len() as u64 {
                Some("runs past the payload")
            } else if u64::from(offset) < previous_end {
                Some("overlaps or precedes the previous part")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(WireError::BadPayloadRange {
                    part: index,
                    offset,
                    length,
                    payload_bytes: payload.len(),
                    problem,
                });
            }
            previous_end = end;
            // `end` is within the payload, so both fit in usize.
            split.push(PayloadPart {
                part,
                batch: payload.slice(offset as usize..end as usize),
            });
        }
        Ok(split)
    }
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    let payload = b"aaaabbbbbbcc".to_vec();
    let part = |topic: &str, queue: u32, offset: u32, length: u32| ProducePart {
        topic: topic.into(),
        queue_id: QueueId(queue),
        record_count: 2,
        payload_offset: offset,
        payload_length: length,
    };
    samples.add_with_payload(
        ProduceRequest {
            producer_group: "checkout".into(),
            flush: FlushExpectation::Sync,
            parts: vec![
                part("orders", 0, 0, 4),
                part("orders", 5, 4, 6),
                part("payments", 1, 10, 2),
            ],
        },
        &payload,
    );
    samples.add(ProduceResponse {
        parts: vec![
            ProducePartResult {
                error_code: 0,
                first_offset: QueueOffset(1_000),
                record_count: 2,
            },
            ProducePartResult {
                error_code: crate::ErrorCode::DiskFull.as_u16(),
                first_offset: QueueOffset(0),
                record_count: 0,
            },
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header;

    #[test]
    fn produce_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        samples(&mut collected);
        assert_eq!(collected.frames.len(), 2);
    }

    fn archived(request: &ProduceRequest) -> (Bytes, Bytes) {
        let bytes = header::header_bytes(request).unwrap();
        (bytes, Bytes::from_static(b"0123456789"))
    }

    #[test]
    fn split_payload_slices_each_part_without_copying() {
        let request = ProduceRequest {
            producer_group: "g".into(),
            flush: FlushExpectation::BrokerDefault,
            parts: vec![
                ProducePart {
                    topic: "a".into(),
                    queue_id: QueueId(0),
                    record_count: 1,
                    payload_offset: 0,
                    payload_length: 3,
                },
                ProducePart {
                    topic: "b".into(),
                    queue_id: QueueId(1),
                    record_count: 1,
                    payload_offset: 5,
                    payload_length: 5,
                },
            ],
        };
        let (bytes, payload) = archived(&request);
        let view = header::access::<ProduceRequest>(&bytes, 100).unwrap();
        let split = view.split_payload(&payload).unwrap();
        assert_eq!(split[0].batch.as_ref(), b"012");
        assert_eq!(split[1].batch.as_ref(), b"56789");
        assert_eq!(split[1].part.topic, "b");
        assert_eq!(split[1].batch.as_ptr(), payload[5..].as_ptr());
    }

    #[test]
    fn split_payload_refuses_bad_ranges() {
        let cases: [(&[(u32, u32)], &str); 4] = [
            (&[(0, 0)], "is empty"),
            (&[(8, 3)], "runs past the payload"),
            (&[(0, 4), (3, 2)], "overlaps or precedes the previous part"),
            (&[(u32::MAX, u32::MAX)], "runs past the payload"),
        ];
        for (ranges, expected) in cases {
            let request = ProduceRequest {
                producer_group: "g".into(),
                flush: FlushExpectation::BrokerDefault,
                parts: ranges
                    .iter()
                    .map(|&(offset, length)| ProducePart {
                        topic: "t".into(),
                        queue_id: QueueId(0),
                        record_count: 1,
                        payload_offset: offset,
                        payload_length: length,
                    })
                    .collect(),
            };
            let (bytes, payload) = archived(&request);
            let view = header::access::<ProduceRequest>(&bytes, 100).unwrap();
            match view.split_payload(&payload) {
                Err(WireError::BadPayloadRange { problem, .. }) => assert_eq!(problem, expected),
                other => panic!("{ranges:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn split_payload_refuses_no_parts_and_too_many() {
        for count in [0, MAX_PRODUCE_PARTS + 1] {
            let request = ProduceRequest {
                producer_group: "g".into(),
                flush: FlushExpectation::BrokerDefault,
                parts: (0..count)
                    .map(|index| ProducePart {
                        topic: "t".into(),
                        queue_id: QueueId(0),
                        record_count: 1,
                        payload_offset: index as u32,
                        payload_length: 1,
                    })
                    .collect(),
            };
            let bytes = header::header_bytes(&request).unwrap();
            let view = header::access::<ProduceRequest>(&bytes, 100).unwrap();
            let payload = Bytes::from(vec![0; count]);
            assert!(matches!(
                view.split_payload(&payload),
                Err(WireError::BadPartCount { .. })
            ));
        }
    }

    #[test]
    fn single_part_request_covers_the_batch() {
        let request = ProduceRequest::single(
            "g",
            "orders",
            QueueId(2),
            4,
            &[0; 300],
            FlushExpectation::BrokerDefault,
        );
        assert_eq!(request.parts[0].payload_length, 300);
        assert_eq!(request.parts[0].payload_offset, 0);
    }
}
