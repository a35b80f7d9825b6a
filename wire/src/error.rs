//! [`WireError`]: everything that can go wrong decoding (or encoding) a frame or a header.
//!
//! Each error maps to the [`ErrorCode`] a server answers with ([`WireError::error_code`]),
//! and says whether the connection can go on ([`WireError::closes_connection`]): after a
//! framing error the byte stream can no longer be split into frames, after a header error
//! only that one request is refused.

use crate::error_code::ErrorCode;
use crate::frame::{FrameKind, MAGIC, VERSION};

/// A decode or encode failure. Decode failures describe what a peer sent; none of them is a
/// panic, whatever the bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix is smaller than the fixed part of a frame.
    #[error("frame length {frame_length} is shorter than the fixed part of a frame")]
    FrameTooShort {
        /// The `frame_length` field.
        frame_length: u32,
    },
    /// The frame (length prefix included) is larger than the limit; nothing was buffered
    /// or allocated for it.
    #[error("frame of {frame_bytes} bytes exceeds the limit of {max_frame_bytes} bytes")]
    FrameTooLarge {
        /// Size of the whole frame, length prefix included.
        frame_bytes: u64,
        /// The decoder's (or encoder's) limit.
        max_frame_bytes: usize,
    },
    /// The frame's size is not a multiple of 8 (every encoder pads to one).
    #[error("frame of {frame_bytes} bytes is not padded to a multiple of 8")]
    FrameNotPadded {
        /// Size of the whole frame, length prefix included.
        frame_bytes: u64,
    },
    /// The magic number is wrong: this is not a Spillway frame (or the stream lost sync).
    #[error("bad magic 0x{found:04x} (expected 0x{MAGIC:04x}): not a Spillway frame")]
    BadMagic {
        /// The magic found.
        found: u16,
    },
    /// The frame's version is not the one this build speaks.
    #[error("frame version {found} is not supported (this build speaks version {VERSION})")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The kind byte is not request, response or one-way.
    #[error("unknown frame kind {found}")]
    BadKind {
        /// The kind byte found.
        found: u8,
    },
    /// Reserved bytes of the fixed part are not zero.
    #[error("reserved bytes of the frame are not zero: {reserved:02x?}")]
    ReservedBitsSet {
        /// The reserved bytes found.
        reserved: [u8; 3],
    },
    /// A request or one-way frame carries a non-zero error code.
    #[error("a {kind} frame carries error code {error_code}; only responses may")]
    ErrorCodeOutsideResponse {
        /// The frame's kind.
        kind: FrameKind,
        /// The error code found.
        error_code: u16,
    },
    /// Header length and padding do not fit in the frame, or the padding is 8 or more.
    #[error(
        "header of {header_length} bytes and padding of {padding_length} do not fit in a \
         frame of length {frame_length}"
    )]
    LengthsInconsistent {
        /// The `frame_length` field.
        frame_length: u32,
        /// The `header_length` field.
        header_length: u32,
        /// The `padding_length` field.
        padding_length: u8,
    },
    /// The padding between header and payload is not zero bytes.
    #[error("the padding between header and payload is not zero")]
    BadPadding,
    /// The frame's CRC does not match its bytes.
    #[error(
        "frame checksum mismatch: frame says 0x{expected:08x}, bytes hash to 0x{computed:08x}"
    )]
    ChecksumMismatch {
        /// The CRC field.
        expected: u32,
        /// The CRC of the covered bytes.
        computed: u32,
    },
    /// The opcode is not one this build knows.
    #[error("unknown opcode {opcode}")]
    UnknownOpcode {
        /// The opcode number.
        opcode: u16,
    },
    /// The header bytes do not validate as the archived type the opcode names.
    #[error("invalid header for opcode {opcode}: {reason}")]
    BadHeader {
        /// The frame's opcode number.
        opcode: u16,
        /// What the validator found.
        reason: String,
    },
    /// A header was asked of a frame whose opcode, kind or error code says it carries
    /// another type.
    #[error(
        "expected a {expected} header, but the frame is a {kind} of opcode {opcode} with error \
         code {error_code}"
    )]
    UnexpectedHeader {
        /// The header type asked for.
        expected: &'static str,
        /// The frame's kind.
        kind: FrameKind,
        /// The frame's opcode number.
        opcode: u16,
        /// The frame's error code number.
        error_code: u16,
    },
    /// A produce request has no parts, or more than the limit.
    #[error("produce request has {parts} parts; 1 to {max_parts} are allowed")]
    BadPartCount {
        /// Parts in the request.
        parts: usize,
        /// The limit.
        max_parts: usize,
    },
    /// A produce part's payload byte range is outside the payload or overlaps the part
    /// before it.
    #[error(
        "produce part {part}: payload range {offset}..+{length} {problem} (payload is \
         {payload_bytes} bytes)"
    )]
    BadPayloadRange {
        /// Index of the part in the request.
        part: usize,
        /// The part's `payload_offset`.
        offset: u32,
        /// The part's `payload_length`.
        length: u32,
        /// Size of the frame's payload.
        payload_bytes: usize,
        /// What is wrong with the range.
        problem: &'static str,
    },
    /// Serializing a header failed (encode side only).
    #[error("could not encode header: {reason}")]
    HeaderEncode {
        /// What the serializer said.
        reason: String,
    },
}

impl WireError {
    /// The code a server answers with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            WireError::FrameTooShort { .. }
            | WireError::FrameNotPadded { .. }
            | WireError::BadMagic { .. }
            | WireError::BadKind { .. }
            | WireError::ReservedBitsSet { .. }
            | WireError::ErrorCodeOutsideResponse { .. }
            | WireError::LengthsInconsistent { .. }
            | WireError::BadPadding
            | WireError::ChecksumMismatch { .. } => ErrorCode::BadFrame,
            WireError::UnknownOpcode { .. } => ErrorCode::UnknownOpcode,
            WireError::BadHeader { .. }
            | WireError::UnexpectedHeader { .. }
            | WireError::BadPartCount { .. }
            | WireError::BadPayloadRange { .. } => ErrorCode::BadHeader,
            WireError::HeaderEncode { .. } => ErrorCode::Internal,
        }
    }

    /// Whether the stream can no longer be split into frames, so the connection must be
    /// closed (after answering with [`WireError::error_code`] and request id 0).
    pub fn closes_connection(&self) -> bool {
        self.error_code().closes_connection()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_errors_close_the_connection_and_header_errors_do_not() {
        let framing = [
            WireError::FrameTooShort { frame_length: 3 },
            WireError::FrameTooLarge {
                frame_bytes: 1 << 40,
                max_frame_bytes: 16,
            },
            WireError::FrameNotPadded { frame_bytes: 33 },
            WireError::BadMagic { found: 1 },
            WireError::UnsupportedVersion { found: 9 },
            WireError::BadKind { found: 0 },
            WireError::ReservedBitsSet {
                reserved: [1, 0, 0],
            },
            WireError::ErrorCodeOutsideResponse {
                kind: FrameKind::Request,
                error_code: 5,
            },
            WireError::LengthsInconsistent {
                frame_length: 28,
                header_length: 1,
                padding_length: 0,
            },
            WireError::BadPadding,
            WireError::ChecksumMismatch {
                expected: 1,
                computed: 2,
            },
        ];
        for error in &framing {
            assert!(error.closes_connection(), "{error}");
        }
        let per_request = [
            WireError::UnknownOpcode { opcode: 7 },
            WireError::BadHeader {
                opcode: 100,
                reason: "x".into(),
            },
            WireError::BadPartCount {
                parts: 0,
                max_parts: 1,
            },
        ];
        for error in &per_request {
            assert!(!error.closes_connection(), "{error}");
        }
        assert_eq!(
            WireError::UnsupportedVersion { found: 2 }.error_code(),
            ErrorCode::UnsupportedVersion
        );
    }
}
