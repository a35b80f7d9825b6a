//! Headers: the rkyv archive between a frame's fixed part and its payload.
//!
//! A header is read **in place**: [`access`] validates the archive with rkyv's checked
//! access (bytecheck: every offset, length, enum tag and UTF-8 string is checked against the
//! header's bytes) and hands out a reference into the frame's buffer. Nothing is unpacked
//! into owned structs unless the caller asks ([`crate::Frame::deserialize_header`]). There
//! is no unchecked access anywhere in this crate.
//!
//! rkyv reads archived fields where they lie and needs each at its natural alignment (a
//! `u64` at a multiple of 8), so header bytes must start at a multiple of [`HEADER_ALIGN`].
//! The encoder pads every frame to a multiple of 8 bytes and puts the header at offset 32,
//! so a stream of frames read into an aligned buffer keeps every header aligned. When a
//! header does land misaligned, [`aligned`] copies it (the header only, never the payload)
//! into an aligned buffer: that is the price of in-place reads, and it is bounded by the
//! frame limit.
//!
//! This module owns the traits a header type implements ([`Header`], [`WireHeader`]), the
//! writer that serializes a header straight into a frame buffer, and [`ErrorDetail`], the
//! header of every error response. The header types themselves live in [`crate::message`].

use std::fmt;

use bytes::{Bytes, BytesMut};
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Portable, Serialize};

use crate::error::WireError;
use crate::opcode::Opcode;

/// Alignment every header's first byte must have to be read in place. Every archived header
/// type's alignment is checked against it at compile time.
pub const HEADER_ALIGN: usize = 8;

/// Longest [`ErrorDetail::message`] an encoder sends; longer messages are cut (at a
/// character boundary), so an error response can never hit a frame limit.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// A type that can travel as a frame header: rkyv-serializable straight into a frame
/// buffer, and readable back in place with validation. Implemented for every type that
/// qualifies; header types derive `rkyv::{Archive, Serialize, Deserialize}`.
pub trait Header:
    Sized
    + Archive<
        Archived: Portable
                      + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, HighDeserializer<rancor::Error>>,
    > + for<'a, 'b> Serialize<HighSerializer<HeaderWriter<'b>, ArenaHandle<'a>, rancor::Error>>
{
}

impl<T> Header for T where
    T: Archive<
            Archived: Portable
                          + for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + Deserialize<T, HighDeserializer<rancor::Error>>,
        > + for<'a, 'b> Serialize<HighSerializer<HeaderWriter<'b>, ArenaHandle<'a>, rancor::Error>>
{
}

/// Whether a header type is sent in requests (request and one-way frames) or in responses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HeaderRole {
    /// Carried by request and one-way frames.
    Request,
    /// Carried by successful response frames.
    Response,
}

impl fmt::Display for HeaderRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderRole::Request => "request",
            HeaderRole::Response => "response",
        })
    }
}

/// A header bound to one operation: the request or the (successful) response of one
/// [`Opcode`]. Reading it from a frame checks the frame's opcode and kind first.
pub trait WireHeader: Header {
    /// The operation whose frames carry this header.
    const OPCODE: Opcode;
    /// Request or response.
    const ROLE: HeaderRole;
}

/// The header of every response whose error code is not [`crate::ErrorCode::Ok`]: a
/// human-readable explanation (which topic was not found, which limit was hit). Clients
/// act on the code, never on the text.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct ErrorDetail {
    /// What went wrong, for logs; at most [`MAX_ERROR_MESSAGE_BYTES`] as sent.
    pub message: String,
}

/// The rkyv writer that appends a header to a frame buffer. Positions are relative to the
/// header's first byte, so the archive's internal alignment is relative to where the header
/// starts (which the frame layout keeps aligned).
pub struct HeaderWriter<'a> {
    buffer: &'a mut BytesMut,
    start: usize,
}

impl Positional for HeaderWriter<'_> {
    fn pos(&self) -> usize {
        self.buffer.len() - self.start
    }
}

impl<E> Writer<E> for HeaderWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends `header`'s archive to `buffer`; returns its length. On failure `buffer` is left
/// as it was.
pub(crate) fn serialize_into<H: Header>(
    header: &H,
    buffer: &mut BytesMut,
) -> Result<usize, WireError> {
    let start = buffer.len();
    let writer = HeaderWriter { buffer, start };
    match rkyv::api::high::to_bytes_in::<_, rancor::Error>(header, writer) {
        Ok(writer) => Ok(writer.buffer.len() - start),
        Err(error) => {
            buffer.truncate(start);
            Err(WireError::HeaderEncode {
                reason: error.to_string(),
            })
        }
    }
}

/// A header's archive as standalone bytes (aligned), e.g. for [`crate::Frame::new`] or
/// [`crate::FrameEncoder::encode_raw`].
pub fn header_bytes<H: Header>(header: &H) -> Result<Bytes, WireError> {
    let mut buffer = BytesMut::new();
    serialize_into(header, &mut buffer)?;
    Ok(aligned(buffer.freeze()))
}

/// Validates `bytes` as an archived `H` and returns it, read in place. `opcode` is only for
/// the error. `bytes` must start at a multiple of [`HEADER_ALIGN`] ([`aligned`] makes sure);
/// if they do not, the validator refuses them rather than read misaligned.
pub fn access<H: Header>(bytes: &[u8], opcode: u16) -> Result<&H::Archived, WireError> {
    rkyv::access::<H::Archived, rancor::Error>(bytes).map_err(|error| WireError::BadHeader {
        opcode,
        reason: error.to_string(),
    })
}

/// Validates `bytes` as an archived `H` and deserializes it into an owned value.
pub fn deserialize<H: Header>(bytes: &[u8], opcode: u16) -> Result<H, WireError> {
    let archived = access::<H>(bytes, opcode)?;
    rkyv::deserialize::<H, rancor::Error>(archived).map_err(|error| WireError::BadHeader {
        opcode,
        reason: error.to_string(),
    })
}

/// `bytes` itself if it starts at a multiple of [`HEADER_ALIGN`] (or is empty), else an
/// aligned copy.
///
/// Why copy: rkyv's validated access reads archived integers in place and refuses (never
/// mis-reads) a misaligned archive. A header's address is wherever its frame landed in the
/// receive buffer; frames padded to 8 bytes keep it aligned in a steady stream, but a
/// buffer that was compacted or a peer's odd-sized reads can shift it. Copying the header
/// (small, bounded by the frame limit) is cheaper than giving up in-place reads, and the
/// payload, which is large, is never copied.
pub fn aligned(bytes: Bytes) -> Bytes {
    if bytes.is_empty() || (bytes.as_ptr() as usize) % HEADER_ALIGN == 0 {
        return bytes;
    }
    let mut copy = AlignedVec::<HEADER_ALIGN>::with_capacity(bytes.len());
    copy.extend_from_slice(&bytes);
    Bytes::from_owner(copy)
}

/// `message` cut to at most [`MAX_ERROR_MESSAGE_BYTES`], at a character boundary.
pub(crate) fn truncate_message(message: &str) -> &str {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_ERROR_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_header_is_copied_and_still_reads() {
        let detail = ErrorDetail {
            message: "topic orders not found".into(),
        };
        let archive = header_bytes(&detail).unwrap();
        // Place the archive at an odd address inside a larger buffer.
        let mut buffer = BytesMut::with_capacity(archive.len() + 16);
        let skew = HEADER_ALIGN - (buffer.as_ptr() as usize % HEADER_ALIGN) + 1;
        buffer.extend_from_slice(&vec![0; skew]);
        buffer.extend_from_slice(&archive);
        let misaligned = buffer.freeze().slice(skew..);
        assert_ne!(misaligned.as_ptr() as usize % HEADER_ALIGN, 0);
        // In place it is refused (never read misaligned)...
        assert!(matches!(
            access::<ErrorDetail>(&misaligned, 0),
            Err(WireError::BadHeader { .. })
        ));
        // ...after `aligned` it reads.
        let fixed = aligned(misaligned);
        assert_eq!(fixed.as_ptr() as usize % HEADER_ALIGN, 0);
        assert_eq!(
            access::<ErrorDetail>(&fixed, 0).unwrap().message,
            detail.message
        );
        assert_eq!(deserialize::<ErrorDetail>(&fixed, 0).unwrap(), detail);
    }

    #[test]
    fn aligned_header_is_not_copied() {
        let archive = header_bytes(&ErrorDetail::default()).unwrap();
        let pointer = archive.as_ptr();
        assert_eq!(aligned(archive).as_ptr(), pointer);
    }

    #[test]
    fn error_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        let cut = truncate_message(&long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(cut.len() >= MAX_ERROR_MESSAGE_BYTES - 1);
        assert_eq!(truncate_message("short"), "short");
    }
}
