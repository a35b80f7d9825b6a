//! The framed binary protocol spoken between clients, brokers and name servers.
//!
//! This crate is pure encode/decode over [`bytes`]: it knows nothing about sockets, glommio
//! or any runtime, so the thread-per-core broker, the name server and a tokio-based client
//! all use the same code. It never does I/O and never blocks.
//!
//! # Why it looks like this
//!
//! **Encode once.** A message is encoded a single time, by the producer, in the storage
//! record format (`spillway_storage::record`). On the wire it is the *payload* of a frame,
//! raw bytes that this crate never looks into or re-encodes: the broker validates and stamps
//! the batch and stores those exact bytes, and a pull response carries the stored bytes
//! back. The decoder hands out the payload as a slice of the receive buffer (no copy);
//! the encoder can leave the payload out of the frame buffer ([`FrameEncoder::encode_head`])
//! so a sender writes it from where it already is, with a vectored write.
//!
//! **Headers validated, then read in place.** Everything else a request says (topic, queue,
//! offsets, limits) is a small header archived with rkyv. A receiver validates it with
//! rkyv's checked access (bytecheck: every relative pointer, length, enum tag and UTF-8
//! string against the header's bytes) and reads the fields where they lie, without
//! deserializing; unchecked access is never used. rkyv needs aligned archives, so every
//! frame is padded to a multiple of 8 bytes with the header at offset 32: in a stream of
//! frames the header stays aligned, and when it does not, only the header is copied
//! ([`header::aligned`]).
//!
//! **Limits before allocation.** A peer's length field is compared with `max_frame_bytes`
//! (default [`DEFAULT_MAX_FRAME_BYTES`]) before a single byte is reserved for the frame, so
//! a lying length costs nothing. Every other length is checked against the bytes actually
//! received; no count a peer sends sizes an allocation beyond the frame it came in.
//!
//! **Checked framing, many requests in flight.** Each frame carries a magic, a version, a
//! CRC-32 over everything but its length prefix, and a request id, so one connection carries
//! many concurrent requests whose responses may come back in any order. A broken frame
//! breaks the stream (the connection closes after a connection-level error response); an
//! unknown opcode or a bad header fails only that request.
//!
//! **Stable numbers.** [`Opcode`] and [`ErrorCode`] numbers never change; clients match on
//! them and treat unknown error codes as failures.
//!
//! # Map
//!
//! * `frame.rs`: the frame layout, [`Envelope`], [`Frame`], [`FrameDecoder`],
//!   [`FrameEncoder`].
//! * [`header`] (`header.rs`): the [`WireHeader`] trait, in-place validated access, alignment,
//!   [`ErrorDetail`].
//! * [`message`] (`message/`): the header types of every operation, one file per subject.
//! * `opcode.rs` [`Opcode`], `error_code.rs` [`ErrorCode`], `error.rs` [`WireError`],
//!   `ids.rs` the id newtypes.
//! * `frame_fuzz.rs`: the in-suite property test of the decoder; `fuzz/`: its cargo-fuzz
//!   target.
//!
//! # Example
//!
//! ```
//! use bytes::BytesMut;
//! use spillway_wire::message::{GetQueueOffsetsRequest, GetQueueOffsetsResponse};
//! use spillway_wire::{
//!     Envelope, ErrorCode, FrameDecoder, FrameEncoder, Opcode, QueueId, QueueOffset, RequestId,
//! };
//!
//! let encoder = FrameEncoder::new();
//! let decoder = FrameDecoder::new();
//!
//! // Client: a request.
//! let mut to_broker = BytesMut::new();
//! let request = GetQueueOffsetsRequest { topic: "orders".into(), queue_id: QueueId(3) };
//! let envelope = Envelope::request(Opcode::GetQueueOffsets, RequestId(1));
//! encoder.encode(&mut to_broker, envelope, &request, &[])?;
//!
//! // Broker: decode, read the header in place, answer.
//! let frame = decoder.decode(&mut to_broker)?.expect("a whole frame");
//! let header = frame.header::<GetQueueOffsetsRequest>()?;
//! assert_eq!(header.topic, "orders");
//! let mut to_client = BytesMut::new();
//! let response = GetQueueOffsetsResponse {
//!     min_offset: QueueOffset(0),
//!     max_offset: QueueOffset(42),
//! };
//! encoder.encode(&mut to_client, frame.envelope().response(ErrorCode::Ok), &response, &[])?;
//!
//! // Client: match the response to its request by id, check the code, read.
//! let frame = decoder.decode(&mut to_client)?.expect("a whole frame");
//! assert_eq!(frame.request_id(), RequestId(1));
//! assert_eq!(frame.error_code(), Ok(ErrorCode::Ok));
//! let offsets = frame.header::<GetQueueOffsetsResponse>()?;
//! assert_eq!(offsets.max_offset.to_native(), QueueOffset(42));
//! # Ok::<(), spillway_wire::WireError>(())
//! ```

mod error;
mod error_code;
mod frame;
#[cfg(test)]
mod frame_fuzz;
pub mod header;
mod ids;
pub mod message;
mod opcode;

pub use error::WireError;
pub use error_code::{ErrorCode, UnknownErrorCode, ALL_ERROR_CODES};
pub use frame::{
    payload_is_records, Envelope, Frame, FrameDecoder, FrameEncoder, FrameKind,
    ABSOLUTE_MAX_FRAME_BYTES, DEFAULT_MAX_FRAME_BYTES, FIXED_BYTES, FRAME_ALIGN, MAGIC,
    MIN_MAX_FRAME_BYTES, VERSION,
};
pub use header::{ArchivedErrorDetail, ErrorDetail, HeaderRole, WireHeader};
pub use ids::{
    ArchivedBrokerId, ArchivedQueueId, ArchivedQueueOffset, ArchivedRequestId, ArchivedShardId,
    BrokerId, QueueId, QueueOffset, RequestId, ShardId,
};
pub use opcode::{Opcode, ALL_OPCODES};
