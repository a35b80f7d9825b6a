//! The header types: one request and one response type per [`Opcode`], named after it
//! (`Opcode::Pull` → [`PullRequest`], [`PullResponse`]), grouped by subject:
//!
//! | file | opcodes |
//! |---|---|
//! | `produce.rs` | `Produce` |
//! | `pull.rs` | `Pull` |
//! | `bind_shard.rs` | `BindShard` |
//! | `consumer_offset.rs` | `CommitConsumerOffset`, `QueryConsumerOffset` |
//! | `queue_offset.rs` | `GetQueueOffsets`, `SearchOffsetByTimestamp` |
//! | `topic.rs` | `CreateTopic`, `DeleteTopic`, `ListTopics` (and `TopicConfig`, `ShardLayout`) |
//! | `broker_registry.rs` | `RegisterBroker`, `BrokerHeartbeat`, `UnregisterBroker` |
//! | `route.rs` | `GetTopicRoute`, `GetClusterInfo` |
//! | `client_registry.rs` | `ClientHeartbeat`, `GetConsumerGroupMembers` |
//!
//! Every type derives rkyv's `Archive`; its archived twin (`ArchivedPullRequest`, …) is what
//! [`Frame::header`] hands out, read in place. Conventions: strings are UTF-8 (checked on
//! access); ids are the id newtypes ([`crate::QueueId`], …); error codes inside headers are
//! raw `u16`, so a code unknown to the reader still decodes. A successful response carries
//! the response type; an error response carries [`crate::ErrorDetail`] instead.
//!
//! Changing a type changes its archive layout, which is a protocol change: add new
//! operations (new opcodes) rather than editing shipped types, or bump the frame version.

mod bind_shard;
mod broker_registry;
mod client_registry;
mod consumer_offset;
mod produce;
mod pull;
mod queue_offset;
mod route;
mod topic;

pub use bind_shard::*;
pub use broker_registry::*;
pub use client_registry::*;
pub use consumer_offset::*;
pub use produce::*;
pub use pull::*;
pub use queue_offset::*;
pub use route::*;
pub use topic::*;

use crate::error::WireError;
use crate::frame::{Frame, FrameKind};
use crate::header::{HeaderRole, WireHeader, HEADER_ALIGN};
use crate::opcode::Opcode;

/// Binds each opcode to its request and response types, checks at compile time that their
/// archives fit [`HEADER_ALIGN`], and generates the per-opcode dispatch of
/// [`validate_header`]. The match in `access_by_opcode` has no wildcard: an opcode without
/// header types does not compile.
macro_rules! wire_headers {
    ($($opcode:ident => $request:ident, $response:ident;)*) => {
        $(
            impl WireHeader for $request {
                const OPCODE: Opcode = Opcode::$opcode;
                const ROLE: HeaderRole = HeaderRole::Request;
            }

            impl WireHeader for $response {
                const OPCODE: Opcode = Opcode::$opcode;
                const ROLE: HeaderRole = HeaderRole::Response;
            }

            const _: () = assert!(
                core::mem::align_of::<rkyv::Archived<$request>>() <= HEADER_ALIGN
                    && core::mem::align_of::<rkyv::Archived<$response>>() <= HEADER_ALIGN
            );
        )*

        /// Validates the header of a successful frame as the type its opcode and kind name.
        fn access_by_opcode(frame: &Frame, opcode: Opcode) -> Result<(), WireError> {
            let request = frame.kind() != FrameKind::Response;
            match opcode {
                $(
                    Opcode::$opcode => if request {
                        frame.header::<$request>().map(drop)
                    } else {
                        frame.header::<$response>().map(drop)
                    },
                )*
            }
        }
    };
}

wire_headers! {
    Produce => ProduceRequest, ProduceResponse;
    Pull => PullRequest, PullResponse;
    BindShard => BindShardRequest, BindShardResponse;
    CommitConsumerOffset => CommitConsumerOffsetRequest, CommitConsumerOffsetResponse;
    QueryConsumerOffset => QueryConsumerOffsetRequest, QueryConsumerOffsetResponse;
    GetQueueOffsets => GetQueueOffsetsRequest, GetQueueOffsetsResponse;
    SearchOffsetByTimestamp => SearchOffsetByTimestampRequest, SearchOffsetByTimestampResponse;
    CreateTopic => CreateTopicRequest, CreateTopicResponse;
    DeleteTopic => DeleteTopicRequest, DeleteTopicResponse;
    ListTopics => ListTopicsRequest, ListTopicsResponse;
    RegisterBroker => RegisterBrokerRequest, RegisterBrokerResponse;
    BrokerHeartbeat => BrokerHeartbeatRequest, BrokerHeartbeatResponse;
    UnregisterBroker => UnregisterBrokerRequest, UnregisterBrokerResponse;
    GetTopicRoute => GetTopicRouteRequest, GetTopicRouteResponse;
    GetClusterInfo => GetClusterInfoRequest, GetClusterInfoResponse;
    ClientHeartbeat => ClientHeartbeatRequest, ClientHeartbeatResponse;
    GetConsumerGroupMembers => GetConsumerGroupMembersRequest, GetConsumerGroupMembersResponse;
}

/// Checks a decoded frame's header against the type its opcode, kind and error code name
/// (for a produce request, also its parts against the payload), without deserializing.
///
/// A dispatcher usually reads the typed header directly ([`Frame::header`]); this is for code
/// that handles frames generically, e.g. a shard checking a frame before forwarding it, and
/// for the fuzz target.
pub fn validate_header(frame: &Frame) -> Result<(), WireError> {
    // First: a connection-level error response carries opcode 0.
    if frame.kind() == FrameKind::Response && frame.envelope().error_code_number() != 0 {
        return frame.error_detail().map(drop);
    }
    let opcode = frame.opcode()?;
    access_by_opcode(frame, opcode)?;
    if opcode == Opcode::Produce && frame.kind() != FrameKind::Response {
        frame
            .header::<ProduceRequest>()?
            .split_payload(frame.payload())?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Sample headers of every type, each checked to round-trip through a frame as it is
    //! collected; the property test mutates their encoded frames.

    use std::collections::HashSet;
    use std::fmt::Debug;

    use bytes::BytesMut;

    use super::validate_header;
    use crate::error_code::ErrorCode;
    use crate::frame::{Envelope, FrameDecoder, FrameEncoder};
    use crate::header::{HeaderRole, WireHeader};
    use crate::ids::RequestId;
    use crate::opcode::Opcode;

    /// Encoded sample frames, each round-tripped when added.
    #[derive(Default)]
    pub(crate) struct Samples {
        pub(crate) frames: Vec<BytesMut>,
        pub(crate) seen: HashSet<(Opcode, bool)>,
    }

    impl Samples {
        /// Adds a sample with an empty payload.
        pub(crate) fn add<H: WireHeader + PartialEq + Debug>(&mut self, header: H) {
            self.add_with_payload(header, &[]);
        }

        /// Encodes `header` and `payload` into a frame, decodes it and checks that the same
        /// envelope, header and payload come back; keeps the encoded frame.
        pub(crate) fn add_with_payload<H: WireHeader + PartialEq + Debug>(
            &mut self,
            header: H,
            payload: &[u8],
        ) {
            let request_id = RequestId(self.frames.len() as u64 + 1);
            let request = Envelope::request(H::OPCODE, request_id);
            let envelope = match H::ROLE {
                HeaderRole::Request => request,
                HeaderRole::Response => request.response(ErrorCode::Ok),
            };
            let mut buffer = BytesMut::new();
            FrameEncoder::new()
                .encode(&mut buffer, envelope, &header, payload)
                .unwrap();
            let encoded = buffer.clone();
            let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
            assert!(buffer.is_empty());
            assert_eq!(*frame.envelope(), envelope);
            assert_eq!(frame.payload().as_ref(), payload);
            assert_eq!(frame.deserialize_header::<H>().unwrap(), header);
            assert!(frame.header::<H>().is_ok());
            validate_header(&frame).unwrap();
            self.seen
                .insert((H::OPCODE, H::ROLE == HeaderRole::Request));
            self.frames.push(encoded);
        }
    }

    /// Samples of every header type, in every module.
    pub(crate) fn all_samples() -> Samples {
        let mut samples = Samples::default();
        super::produce::samples(&mut samples);
        super::pull::samples(&mut samples);
        super::bind_shard::samples(&mut samples);
        super::consumer_offset::samples(&mut samples);
        super::queue_offset::samples(&mut samples);
        super::topic::samples(&mut samples);
        super::broker_registry::samples(&mut samples);
        super::route::samples(&mut samples);
        super::client_registry::samples(&mut samples);
        samples
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::all_samples;
    use super::*;
    use crate::opcode::ALL_OPCODES;
    use crate::{Envelope, ErrorCode, FrameDecoder, FrameEncoder, RequestId};
    use bytes::BytesMut;

    #[test]
    fn every_opcode_has_request_and_response_samples() {
        let collected = all_samples();
        for opcode in ALL_OPCODES {
            for request in [true, false] {
                assert!(
                    collected.seen.contains(&(opcode, request)),
                    "{opcode:?} request={request}"
                );
            }
        }
    }

    #[test]
    fn a_header_type_is_only_read_under_its_own_opcode() {
        let mut buffer = BytesMut::new();
        // A pull header sent under the produce opcode, via the raw path.
        let pull = crate::header::header_bytes(&PullRequest {
            consumer_group: "g".into(),
            topic: "t".into(),
            queue_id: crate::QueueId(0),
            offset: crate::QueueOffset(0),
            max_messages: 1,
            max_bytes: 1,
            tag_expression: String::new(),
            max_wait_ms: 0,
            commit_offset: None,
        })
        .unwrap();
        FrameEncoder::new()
            .encode_raw(
                &mut buffer,
                Envelope::request(Opcode::Produce, RequestId(1)),
                &pull,
                b"x",
            )
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert!(matches!(
            frame.header::<PullRequest>(),
            Err(WireError::UnexpectedHeader { .. })
        ));
    }

    #[test]
    fn error_responses_validate_as_error_detail() {
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode_error(
                &mut buffer,
                Envelope::request(Opcode::ListTopics, RequestId(3)),
                ErrorCode::ServiceUnavailable,
                "shutting down",
            )
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        validate_header(&frame).unwrap();
        assert!(frame.header::<ListTopicsResponse>().is_err());
    }

    #[test]
    fn connection_error_response_validates() {
        let error = WireError::ChecksumMismatch {
            expected: 1,
            computed: 2,
        };
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode_error(
                &mut buffer,
                Envelope::connection_error(error.error_code()),
                error.error_code(),
                &error.to_string(),
            )
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert_eq!(frame.request_id(), RequestId::NONE);
        assert_eq!(frame.error_code(), Ok(ErrorCode::BadFrame));
        assert!(frame.error_code().unwrap().closes_connection());
        validate_header(&frame).unwrap();
        assert!(frame.error_detail().unwrap().message.contains("checksum"));
    }
}
