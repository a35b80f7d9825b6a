//! The frame: how a request, a response or a one-way message is laid out on the byte stream,
//! and the [`FrameDecoder`] / [`FrameEncoder`] that read and write it.
//!
//! Layout (all integers little-endian; offsets from the frame's first byte):
//!
//! ```text
//!  off size field
//!    0  4   frame_length    bytes after this field: 28 + header + padding + payload
//!    4  2   magic           0x5753, the bytes "SW"
//!    6  1   version         1
//!    7  1   kind            1 request, 2 response, 3 one-way
//!    8  8   request_id      chosen by the requester, echoed by the response; 0 for one-way
//!   16  2   opcode          the operation (crate::Opcode); a response echoes its request's
//!   18  2   error_code      responses: 0 = ok, else crate::ErrorCode; must be 0 otherwise
//!   20  1   padding_length  0..=7 zero bytes between header and payload
//!   21  3   reserved        must be zero
//!   24  4   header_length   bytes of the rkyv header
//!   28  4   crc32           CRC-32 (crc32fast) of bytes 4..28, then of bytes 32..end
//!                           (record payloads: of bytes 0..28, header and padding)
//!   32  header_length bytes: the header, an rkyv archive (crate::header)
//!    …  padding_length zero bytes
//!    …  payload: the rest, raw bytes (record batches in the storage record format)
//! ```
//!
//! * **The checksum** covers every byte of the frame except the length prefix and the CRC
//!   field itself: the fixed fields 4..28, the header, the padding and the payload. The
//!   length is protected indirectly: a wrong length makes the CRC run over the wrong bytes.
//! * **Record payloads are not checksummed twice.** Frames whose payload is storage records
//!   ([`payload_is_records`]: produce requests, one-way produces, pull responses) carry
//!   records that each have their own CRCs, and their receivers verify every one (the
//!   storage engine before it stamps a produced record, the client before it hands a
//!   pulled one out). For those frames the CRC covers bytes 0..28 (the length included,
//!   since the payload no longer protects it) and the header and padding, not the
//!   payload: a second pass over every byte on both sides bought nothing but CPU (about a
//!   tenth of the broker's and the producer's at 1 KiB messages).
//! * **Padding**: the encoder pads every frame to a multiple of 8 bytes (the decoder refuses
//!   any other size), so in a stream of frames read into an aligned buffer every header,
//!   at offset 32, stays 8-aligned and rkyv can read it in place without a copy.
//! * **Limits**: the decoder checks the length against `max_frame_bytes` (the whole frame,
//!   length prefix included; default [`DEFAULT_MAX_FRAME_BYTES`]) before it reserves or
//!   allocates anything for the frame.
//!
//! Errors in this layer ([`WireError::closes_connection`]) mean the byte stream can no longer
//! be split into frames: answer with a response of request id 0 carrying the error's code,
//! then close. The decoder leaves the buffer untouched on error, so it keeps returning the
//! same error.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::error_code::{ErrorCode, UnknownErrorCode};
use crate::header::{
    self, ArchivedErrorDetail, ErrorDetail, Header, HeaderRole, WireHeader, HEADER_ALIGN,
};
use crate::ids::RequestId;
use crate::opcode::Opcode;

/// The frame magic at offset 4: the bytes `S`, `W`.
pub const MAGIC: u16 = u16::from_le_bytes(*b"SW");
/// The frame version this code writes and reads.
pub const VERSION: u8 = 1;
/// Size of the fixed part (length prefix included); the header starts here.
pub const FIXED_BYTES: usize = 32;
/// Every frame's size is a multiple of this.
pub const FRAME_ALIGN: usize = 8;
/// Default limit on a whole frame (length prefix included).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 << 20;
/// Smallest `max_frame_bytes` a decoder or encoder accepts.
pub const MIN_MAX_FRAME_BYTES: usize = 4 << 10;
/// Largest `max_frame_bytes` a decoder or encoder accepts, whatever the configuration.
pub const ABSOLUTE_MAX_FRAME_BYTES: usize = 1 << 30;

const LENGTH_PREFIX_BYTES: usize = 4;
/// `frame_length` of a frame with no header, no padding and no payload.
const MIN_FRAME_LENGTH: u32 = (FIXED_BYTES - LENGTH_PREFIX_BYTES) as u32;
/// Bytes needed before magic, version, kind and length can be judged.
const PREFIX_BYTES: usize = 8;

const OFFSET_FRAME_LENGTH: usize = 0;
const OFFSET_MAGIC: usize = 4;
const OFFSET_VERSION: usize = 6;
const OFFSET_KIND: usize = 7;
const OFFSET_REQUEST_ID: usize = 8;
const OFFSET_OPCODE: usize = 16;
const OFFSET_ERROR_CODE: usize = 18;
const OFFSET_PADDING_LENGTH: usize = 20;
const OFFSET_RESERVED: usize = 21;
const OFFSET_HEADER_LENGTH: usize = 24;
const OFFSET_CRC: usize = 28;

const _: () = assert!(OFFSET_CRC + 4 == FIXED_BYTES);
const _: () = assert!(FIXED_BYTES % FRAME_ALIGN == 0);
const _: () = assert!(FRAME_ALIGN % HEADER_ALIGN == 0);
const _: () = assert!(FIXED_BYTES <= MIN_MAX_FRAME_BYTES);
const _: () = assert!(MIN_MAX_FRAME_BYTES <= DEFAULT_MAX_FRAME_BYTES);
const _: () = assert!(DEFAULT_MAX_FRAME_BYTES <= ABSOLUTE_MAX_FRAME_BYTES);
// frame_length is a u32 and sizes are computed in usize: both must hold the largest frame.
const _: () = assert!(ABSOLUTE_MAX_FRAME_BYTES - LENGTH_PREFIX_BYTES <= u32::MAX as usize);

/// What a frame is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// Expects exactly one response with the same request id.
    Request = 1,
    /// Answers the request with the same request id.
    Response = 2,
    /// Expects no response (request id 0).
    OneWay = 3,
}

impl FrameKind {
    /// The kind with this number, if any.
    pub const fn from_u8(number: u8) -> Option<FrameKind> {
        match number {
            1 => Some(FrameKind::Request),
            2 => Some(FrameKind::Response),
            3 => Some(FrameKind::OneWay),
            _ => None,
        }
    }

    /// Whether frames of this kind carry request headers (or response headers).
    pub const fn header_role(self) -> HeaderRole {
        match self {
            FrameKind::Request | FrameKind::OneWay => HeaderRole::Request,
            FrameKind::Response => HeaderRole::Response,
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameKind::Request => "request",
            FrameKind::Response => "response",
            FrameKind::OneWay => "one-way",
        })
    }
}

/// The addressing fields of a frame: what it is, which operation, which request, and how it
/// went. Only valid combinations can be built: requests and one-way frames carry no error
/// code, responses echo their request's id and opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Envelope {
    kind: FrameKind,
    opcode: u16,
    error_code: u16,
    request_id: RequestId,
}

impl Envelope {
    /// A request expecting a response.
    pub fn request(opcode: Opcode, request_id: RequestId) -> Envelope {
        Envelope {
            kind: FrameKind::Request,
            opcode: opcode.as_u16(),
            error_code: 0,
            request_id,
        }
    }

    /// A request expecting no response.
    pub fn one_way(opcode: Opcode) -> Envelope {
        Envelope {
            kind: FrameKind::OneWay,
            opcode: opcode.as_u16(),
            error_code: 0,
            request_id: RequestId::NONE,
        }
    }

    /// The response to this request (same request id, same opcode number, even one unknown
    /// here), with `error_code`.
    pub fn response(&self, error_code: ErrorCode) -> Envelope {
        Envelope {
            kind: FrameKind::Response,
            opcode: self.opcode,
            error_code: error_code.as_u16(),
            request_id: self.request_id,
        }
    }

    /// The response a server sends before closing a connection whose stream it can no
    /// longer read (request id 0, opcode 0).
    pub fn connection_error(error_code: ErrorCode) -> Envelope {
        Envelope {
            kind: FrameKind::Response,
            opcode: 0,
            error_code: error_code.as_u16(),
            request_id: RequestId::NONE,
        }
    }

    /// Request, response or one-way.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The request id (0 for one-way frames and connection errors).
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// The operation, if this build knows its number.
    pub fn opcode(&self) -> Result<Opcode, WireError> {
        Opcode::from_u16(self.opcode).ok_or(WireError::UnknownOpcode {
            opcode: self.opcode,
        })
    }

    /// The opcode number as sent.
    pub fn opcode_number(&self) -> u16 {
        self.opcode
    }

    /// How the request went (always `Ok` for requests and one-way frames). An unknown number
    /// is a failure.
    pub fn error_code(&self) -> Result<ErrorCode, UnknownErrorCode> {
        ErrorCode::try_from(self.error_code)
    }

    /// The error code number as sent.
    pub fn error_code_number(&self) -> u16 {
        self.error_code
    }

    /// Checks that a frame with this envelope carries an `H` header.
    fn expect<H: WireHeader>(&self) -> Result<(), WireError> {
        let matches = self.opcode == H::OPCODE.as_u16()
            && self.kind.header_role() == H::ROLE
            && self.error_code == 0;
        if matches {
            Ok(())
        } else {
            Err(self.unexpected(std::any::type_name::<H>()))
        }
    }

    fn unexpected(&self, expected: &'static str) -> WireError {
        WireError::UnexpectedHeader {
            expected,
            kind: self.kind,
            opcode: self.opcode,
            error_code: self.error_code,
        }
    }
}

/// A decoded (or to-be-encoded) frame: its envelope, its header bytes and its payload.
///
/// The header bytes always start at a multiple of [`HEADER_ALIGN`] (a misaligned header is
/// copied on construction), so [`Frame::header`] reads them in place. The payload is a
/// slice of the receive buffer, never copied (it keeps that buffer alive while held).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    envelope: Envelope,
    header: Bytes,
    payload: Bytes,
}

impl Frame {
    /// A frame from its parts; `header` is an rkyv archive (see [`header::header_bytes`]).
    pub fn new(envelope: Envelope, header: Bytes, payload: Bytes) -> Frame {
        Frame {
            envelope,
            header: header::aligned(header),
            payload,
        }
    }

    /// The addressing fields.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Request, response or one-way.
    pub fn kind(&self) -> FrameKind {
        self.envelope.kind
    }

    /// The request id.
    pub fn request_id(&self) -> RequestId {
        self.envelope.request_id
    }

    /// The operation, if this build knows it (else answer [`ErrorCode::UnknownOpcode`]).
    pub fn opcode(&self) -> Result<Opcode, WireError> {
        self.envelope.opcode()
    }

    /// How the request went (responses); an unknown number is a failure.
    pub fn error_code(&self) -> Result<ErrorCode, UnknownErrorCode> {
        self.envelope.error_code()
    }

    /// The raw header archive.
    pub fn header_bytes(&self) -> &Bytes {
        &self.header
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The payload, giving up the frame.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The header as an `H`, validated and read in place. Fails if the frame's opcode, kind
    /// or error code says it carries another header type, or if the bytes do not validate.
    pub fn header<H: WireHeader>(&self) -> Result<&H::Archived, WireError> {
        self.envelope.expect::<H>()?;
        header::access::<H>(&self.header, self.envelope.opcode)
    }

    /// The header as an owned `H` (validated, then deserialized: allocates).
    pub fn deserialize_header<H: WireHeader>(&self) -> Result<H, WireError> {
        self.envelope.expect::<H>()?;
        header::deserialize::<H>(&self.header, self.envelope.opcode)
    }

    /// The [`ErrorDetail`] of an error response (a response whose error code is not 0).
    pub fn error_detail(&self) -> Result<&ArchivedErrorDetail, WireError> {
        if self.envelope.kind != FrameKind::Response || self.envelope.error_code == 0 {
            return Err(self
                .envelope
                .unexpected(std::any::type_name::<ErrorDetail>()));
        }
        header::access::<ErrorDetail>(&self.header, self.envelope.opcode)
    }

    /// Size of this frame once encoded.
    pub fn encoded_len(&self) -> usize {
        (FIXED_BYTES + self.header.len() + self.payload.len()).next_multiple_of(FRAME_ALIGN)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("envelope", &self.envelope)
            .field("header_bytes", &self.header.len())
            .field("payload_bytes", &self.payload.len())
            .finish()
    }
}

fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}

/// Whether frames of `kind` and `opcode` carry storage records as their payload, which
/// their receivers verify record by record, so the frame CRC leaves the payload out (see
/// the module docs): produce requests (and one-way produces) and pull responses.
pub fn payload_is_records(kind: FrameKind, opcode: u16) -> bool {
    match kind {
        FrameKind::Request | FrameKind::OneWay => opcode == Opcode::Produce.as_u16(),
        FrameKind::Response => opcode == Opcode::Pull.as_u16(),
    }
}

/// The CRC of a frame's covered bytes. `fixed` is the fixed part, `header_and_padding` what
/// follows it up to the payload. Frames with a record payload: 0..28, header and padding;
/// others: 4..28, header, padding and payload.
fn frame_crc(fixed: &[u8], header_and_padding: &[u8], payload: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let kind = FrameKind::from_u8(fixed[OFFSET_KIND]);
    let opcode = read_u16(fixed, OFFSET_OPCODE);
    if kind.is_some_and(|kind| payload_is_records(kind, opcode)) {
        hasher.update(&fixed[OFFSET_FRAME_LENGTH..OFFSET_CRC]);
        hasher.update(header_and_padding);
    } else {
        hasher.update(&fixed[OFFSET_MAGIC..OFFSET_CRC]);
        hasher.update(header_and_padding);
        for piece in payload {
            hasher.update(piece);
        }
    }
    hasher.finalize()
}

fn check_max_frame_bytes(max_frame_bytes: usize) {
    assert!(
        (MIN_MAX_FRAME_BYTES..=ABSOLUTE_MAX_FRAME_BYTES).contains(&max_frame_bytes),
        "max_frame_bytes {max_frame_bytes} outside \
         {MIN_MAX_FRAME_BYTES}..={ABSOLUTE_MAX_FRAME_BYTES}"
    );
}

/// Splits frames off a receive buffer, incrementally: call [`FrameDecoder::decode`] after
/// every read until it returns `Ok(None)` (needs more bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder with the default limit, [`DEFAULT_MAX_FRAME_BYTES`].
    pub const fn new() -> FrameDecoder {
        FrameDecoder {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// A decoder refusing frames larger than `max_frame_bytes` (length prefix included).
    ///
    /// # Panics
    ///
    /// If `max_frame_bytes` is outside
    /// [`MIN_MAX_FRAME_BYTES`]`..=`[`ABSOLUTE_MAX_FRAME_BYTES`] (a configuration bug; config
    /// loaders check the range first).
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> FrameDecoder {
        check_max_frame_bytes(max_frame_bytes);
        FrameDecoder { max_frame_bytes }
    }

    /// The limit on a whole frame.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Decodes the frame at the front of `buffer`, if it is complete, and removes it.
    ///
    /// * `Ok(Some(frame))`: a whole, checked frame; `buffer` now starts after it.
    /// * `Ok(None)`: more bytes are needed. Once the length is known and within the limit,
    ///   `buffer` has reserved room for the whole frame; nothing is reserved before that.
    /// * `Err(error)`: the stream is broken ([`WireError::closes_connection`]); `buffer` is
    ///   untouched.
    ///
    /// The checks, in order (each as soon as its bytes have arrived, so the verdict does not
    /// depend on how the bytes were split into reads): magic, version, kind, length against
    /// the limit and the padding rule; reserved bytes, error code only in responses, header
    /// and padding lengths; then, with the whole frame, the CRC and zero padding. Opcode and
    /// header are not checked here: an unknown opcode or a bad header fails one request,
    /// not the connection ([`Frame::opcode`], [`Frame::header`]).
    pub fn decode(&self, buffer: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if buffer.len() < PREFIX_BYTES {
            return Ok(None);
        }
        let frame_bytes = self.check_prefix(&buffer[..PREFIX_BYTES])?;
        if buffer.len() < FIXED_BYTES {
            buffer.reserve(frame_bytes - buffer.len());
            return Ok(None);
        }
        let fixed = FixedFields::parse(&buffer[..FIXED_BYTES])?;
        if buffer.len() < frame_bytes {
            buffer.reserve(frame_bytes - buffer.len());
            return Ok(None);
        }

        let payload_start = FIXED_BYTES + fixed.header_length + fixed.padding_length;
        let computed = frame_crc(
            &buffer[..FIXED_BYTES],
            &buffer[FIXED_BYTES..payload_start],
            &[&buffer[payload_start..frame_bytes]],
        );
        if computed != fixed.crc {
            return Err(WireError::ChecksumMismatch {
                expected: fixed.crc,
                computed,
            });
        }
        let padding_start = FIXED_BYTES + fixed.header_length;
        let padding_end = padding_start + fixed.padding_length;
        if buffer[padding_start..padding_end]
            .iter()
            .any(|&byte| byte != 0)
        {
            return Err(WireError::BadPadding);
        }

        let mut frame = buffer.split_to(frame_bytes);
        frame.advance(FIXED_BYTES);
        let header = frame.split_to(fixed.header_length).freeze();
        frame.advance(fixed.padding_length);
        let payload = frame.freeze();
        Ok(Some(Frame::new(fixed.envelope, header, payload)))
    }

    /// Checks the first 8 bytes; returns the whole frame's size.
    fn check_prefix(&self, prefix: &[u8]) -> Result<usize, WireError> {
        let magic = read_u16(prefix, OFFSET_MAGIC);
        if magic != MAGIC {
            return Err(WireError::BadMagic { found: magic });
        }
        let version = prefix[OFFSET_VERSION];
        if version != VERSION {
            return Err(WireError::UnsupportedVersion { found: version });
        }
        let kind = prefix[OFFSET_KIND];
        if FrameKind::from_u8(kind).is_none() {
            return Err(WireError::BadKind { found: kind });
        }
        let frame_length = read_u32(prefix, OFFSET_FRAME_LENGTH);
        if frame_length < MIN_FRAME_LENGTH {
            return Err(WireError::FrameTooShort { frame_length });
        }
        let frame_bytes = u64::from(frame_length) + LENGTH_PREFIX_BYTES as u64;
        if frame_bytes > self.max_frame_bytes as u64 {
            return Err(WireError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes: self.max_frame_bytes,
            });
        }
        if frame_bytes % FRAME_ALIGN as u64 != 0 {
            return Err(WireError::FrameNotPadded { frame_bytes });
        }
        // Within the limit, which fits in usize (checked at compile time).
        Ok(frame_bytes as usize)
    }
}

/// The fixed part of a frame, checked.
struct FixedFields {
    envelope: Envelope,
    header_length: usize,
    padding_length: usize,
    crc: u32,
}

impl FixedFields {
    /// Parses and checks the 32 fixed bytes (magic, version, kind and length were checked).
    fn parse(fixed: &[u8]) -> Result<FixedFields, WireError> {
        let mut reserved = [0; 3];
        reserved.copy_from_slice(&fixed[OFFSET_RESERVED..OFFSET_HEADER_LENGTH]);
        if reserved != [0; 3] {
            return Err(WireError::ReservedBitsSet { reserved });
        }
        let kind_number = fixed[OFFSET_KIND];
        let kind =
            FrameKind::from_u8(kind_number).ok_or(WireError::BadKind { found: kind_number })?;
        let error_code = read_u16(fixed, OFFSET_ERROR_CODE);
        if kind != FrameKind::Response && error_code != 0 {
            return Err(WireError::ErrorCodeOutsideResponse { kind, error_code });
        }
        let frame_length = read_u32(fixed, OFFSET_FRAME_LENGTH);
        let header_length = read_u32(fixed, OFFSET_HEADER_LENGTH);
        let padding_length = fixed[OFFSET_PADDING_LENGTH];
        let room = u64::from(frame_length) - u64::from(MIN_FRAME_LENGTH);
        if usize::from(padding_length) >= FRAME_ALIGN
            || u64::from(header_length) + u64::from(padding_length) > room
        {
            return Err(WireError::LengthsInconsistent {
                frame_length,
                header_length,
                padding_length,
            });
        }
        Ok(FixedFields {
            envelope: Envelope {
                kind,
                opcode: read_u16(fixed, OFFSET_OPCODE),
                error_code,
                request_id: RequestId(read_u64(fixed, OFFSET_REQUEST_ID)),
            },
            // Both fit in the frame, which fits in usize.
            header_length: header_length as usize,
            padding_length: usize::from(padding_length),
            crc: read_u32(fixed, OFFSET_CRC),
        })
    }
}

/// Writes frames into a send buffer.
///
/// The payload can be appended ([`FrameEncoder::encode`]) or left out
/// ([`FrameEncoder::encode_head`]) so the caller sends it straight from its own buffer
/// after the head (a vectored write): a producer's batch then reaches the socket without
/// being copied into a frame. The CRC covers it either way, unless it is records
/// ([`payload_is_records`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEncoder {
    max_frame_bytes: usize,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder::new()
    }
}

impl FrameEncoder {
    /// An encoder refusing frames over [`DEFAULT_MAX_FRAME_BYTES`] (the limit peers decode
    /// with by default).
    pub const fn new() -> FrameEncoder {
        FrameEncoder {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// An encoder refusing frames over `max_frame_bytes`.
    ///
    /// # Panics
    ///
    /// Like [`FrameDecoder::with_max_frame_bytes`].
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> FrameEncoder {
        check_max_frame_bytes(max_frame_bytes);
        FrameEncoder { max_frame_bytes }
    }

    /// The limit on a whole frame.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Appends a whole frame: `envelope`, `header` serialized in place, `payload`.
    ///
    /// Fails, leaving `buffer` as it was, if `header` is not the type `envelope` calls for
    /// or if the frame would exceed the limit.
    pub fn encode<H: WireHeader>(
        &self,
        buffer: &mut BytesMut,
        envelope: Envelope,
        header: &H,
        payload: &[u8],
    ) -> Result<(), WireError> {
        self.encode_head(buffer, envelope, header, payload)?;
        buffer.extend_from_slice(payload);
        Ok(())
    }

    /// Appends everything of the frame but `payload`, which the caller must send right after
    /// the appended bytes, unchanged (the CRC covers it).
    pub fn encode_head<H: WireHeader>(
        &self,
        buffer: &mut BytesMut,
        envelope: Envelope,
        header: &H,
        payload: &[u8],
    ) -> Result<(), WireError> {
        self.encode_head_of_pieces(buffer, envelope, header, &[payload])
    }

    /// [`FrameEncoder::encode_head`] for a payload the caller sends as `pieces`, one right
    /// after the other (a producer's batches, each from the buffer it was built in).
    pub fn encode_head_of_pieces<H: WireHeader>(
        &self,
        buffer: &mut BytesMut,
        envelope: Envelope,
        header: &H,
        pieces: &[&[u8]],
    ) -> Result<(), WireError> {
        envelope.expect::<H>()?;
        self.encode_head_of(buffer, envelope, header, pieces)
    }

    /// Appends an error response to the request `request` with an [`ErrorDetail`] carrying
    /// `message` (cut to [`header::MAX_ERROR_MESSAGE_BYTES`]). For a connection-level error
    /// pass [`Envelope::connection_error`]'s envelope as `request`.
    ///
    /// # Panics
    ///
    /// If `error_code` is [`ErrorCode::Ok`]: an error response needs an error.
    pub fn encode_error(
        &self,
        buffer: &mut BytesMut,
        request: Envelope,
        error_code: ErrorCode,
        message: &str,
    ) -> Result<(), WireError> {
        assert!(!error_code.is_ok(), "an error response needs an error code");
        let detail = ErrorDetail {
            message: header::truncate_message(message).to_owned(),
        };
        self.encode_head_of(buffer, request.response(error_code), &detail, &[])
    }

    /// Appends a connection-level error (request id 0, opcode 0) carrying `code` and
    /// `message`: what a peer is sent before its connection closes.
    pub fn encode_connection_error(
        &self,
        buffer: &mut BytesMut,
        code: ErrorCode,
        message: &str,
    ) -> Result<(), WireError> {
        self.encode_error(buffer, Envelope::connection_error(code), code, message)
    }

    /// Appends a frame from an already-encoded header archive (e.g. forwarding a decoded
    /// frame). `header` must be an rkyv archive serialized from position 0.
    pub fn encode_raw(
        &self,
        buffer: &mut BytesMut,
        envelope: Envelope,
        header: &[u8],
        payload: &[u8],
    ) -> Result<(), WireError> {
        let unpadded = FIXED_BYTES as u64 + header.len() as u64 + payload.len() as u64;
        self.check_size(unpadded)?;
        let start = begin(buffer);
        buffer.extend_from_slice(header);
        self.finish(buffer, start, envelope, &[payload])?;
        buffer.extend_from_slice(payload);
        Ok(())
    }

    /// Appends `frame` ([`FrameEncoder::encode_raw`] of its parts).
    pub fn encode_frame(&self, buffer: &mut BytesMut, frame: &Frame) -> Result<(), WireError> {
        self.encode_raw(buffer, frame.envelope, &frame.header, &frame.payload)
    }

    fn encode_head_of<H: Header>(
        &self,
        buffer: &mut BytesMut,
        envelope: Envelope,
        header: &H,
        payload: &[&[u8]],
    ) -> Result<(), WireError> {
        // Refuse an oversized payload before serializing anything.
        let payload_bytes: u64 = payload.iter().map(|piece| piece.len() as u64).sum();
        self.check_size(FIXED_BYTES as u64 + payload_bytes)?;
        let start = begin(buffer);
        if let Err(error) = header::serialize_into(header, buffer) {
            buffer.truncate(start);
            return Err(error);
        }
        self.finish(buffer, start, envelope, payload)
    }

    /// The padded size of a frame of `unpadded` bytes, if within the limit.
    fn check_size(&self, unpadded: u64) -> Result<u64, WireError> {
        let frame_bytes = unpadded.next_multiple_of(FRAME_ALIGN as u64);
        if frame_bytes > self.max_frame_bytes as u64 {
            return Err(WireError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes: self.max_frame_bytes,
            });
        }
        Ok(frame_bytes)
    }

    /// With the header written after the placeholder at `start`: pads, fills in the fixed
    /// part and the CRC (over the `payload` pieces too, which are not appended).
    fn finish(
        &self,
        buffer: &mut BytesMut,
        start: usize,
        envelope: Envelope,
        payload: &[&[u8]],
    ) -> Result<(), WireError> {
        let header_length = buffer.len() - start - FIXED_BYTES;
        let payload_bytes: usize = payload.iter().map(|piece| piece.len()).sum();
        let unpadded = FIXED_BYTES + header_length + payload_bytes;
        let frame_bytes = match self.check_size(unpadded as u64) {
            Ok(frame_bytes) => frame_bytes as usize,
            Err(error) => {
                buffer.truncate(start);
                return Err(error);
            }
        };
        let padding_length = frame_bytes - unpadded;
        buffer.put_bytes(0, padding_length);

        let frame = &mut buffer[start..];
        // Within the limit, so these fit their fields (checked at compile time).
        let frame_length = (frame_bytes - LENGTH_PREFIX_BYTES) as u32;
        frame[OFFSET_FRAME_LENGTH..OFFSET_MAGIC].copy_from_slice(&frame_length.to_le_bytes());
        frame[OFFSET_MAGIC..OFFSET_VERSION].copy_from_slice(&MAGIC.to_le_bytes());
        frame[OFFSET_VERSION] = VERSION;
        frame[OFFSET_KIND] = envelope.kind as u8;
        frame[OFFSET_REQUEST_ID..OFFSET_OPCODE]
            .copy_from_slice(&envelope.request_id.0.to_le_bytes());
        frame[OFFSET_OPCODE..OFFSET_ERROR_CODE].copy_from_slice(&envelope.opcode.to_le_bytes());
        frame[OFFSET_ERROR_CODE..OFFSET_PADDING_LENGTH]
            .copy_from_slice(&envelope.error_code.to_le_bytes());
        frame[OFFSET_PADDING_LENGTH] = padding_length as u8;
        frame[OFFSET_RESERVED..OFFSET_HEADER_LENGTH].fill(0);
        frame[OFFSET_HEADER_LENGTH..OFFSET_CRC]
            .copy_from_slice(&(header_length as u32).to_le_bytes());
        let (fixed, header_and_padding) = frame.split_at(FIXED_BYTES);
        let crc = frame_crc(fixed, header_and_padding, payload);
        frame[OFFSET_CRC..FIXED_BYTES].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }
}

/// Appends the placeholder fixed part; returns where the frame starts.
fn begin(buffer: &mut BytesMut) -> usize {
    let start = buffer.len();
    buffer.put_bytes(0, FIXED_BYTES);
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{PullRequest, PullResponse, PullStatus};
    use crate::QueueId;
    use crate::QueueOffset;

    fn pull_request() -> PullRequest {
        PullRequest {
            consumer_group: "billing".into(),
            topic: "orders".into(),
            queue_id: QueueId(3),
            offset: QueueOffset(42),
            max_messages: 32,
            max_bytes: 1 << 20,
            tag_expression: "paid || refunded".into(),
            max_wait_ms: 5_000,
            commit_offset: Some(QueueOffset(40)),
        }
    }

    fn encoded_request(payload: &[u8]) -> BytesMut {
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode(
                &mut buffer,
                Envelope::request(Opcode::Pull, RequestId(7)),
                &pull_request(),
                payload,
            )
            .unwrap();
        buffer
    }

    #[test]
    fn frame_round_trips_with_payload() {
        let payload = b"batch bytes, not re-encoded".to_vec();
        let mut buffer = encoded_request(&payload);
        assert_eq!(buffer.len() % FRAME_ALIGN, 0);
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert!(buffer.is_empty());
        assert_eq!(frame.kind(), FrameKind::Request);
        assert_eq!(frame.request_id(), RequestId(7));
        assert_eq!(frame.opcode(), Ok(Opcode::Pull));
        assert_eq!(frame.error_code(), Ok(ErrorCode::Ok));
        assert_eq!(frame.payload().as_ref(), payload.as_slice());
        let header = frame.header::<PullRequest>().unwrap();
        assert_eq!(header.topic, "orders");
        assert_eq!(header.queue_id.to_native(), QueueId(3));
        assert_eq!(
            frame.deserialize_header::<PullRequest>().unwrap(),
            pull_request()
        );
        assert_eq!(frame.encoded_len(), encoded_request(&payload).len());
    }

    #[test]
    fn the_crc_leaves_record_payloads_to_their_records_and_covers_everything_else() {
        use crate::message::PullResponse;
        let request = Envelope::request(Opcode::Pull, RequestId(7));
        let pull_response = PullResponse {
            status: PullStatus::Found,
            next_offset: QueueOffset(1),
            min_offset: QueueOffset(0),
            max_offset: QueueOffset(1),
            record_count: 1,
        };
        let mut records = BytesMut::new();
        FrameEncoder::new()
            .encode(
                &mut records,
                request.response(ErrorCode::Ok),
                &pull_response,
                &[9; 64],
            )
            .unwrap();
        let mut pull = encoded_request(&[9; 64]);
        let last = records.len() - 1;

        // A flipped payload bit of a pull response is the records' to catch.
        records[last] ^= 1;
        let frame = FrameDecoder::new().decode(&mut records).unwrap().unwrap();
        assert_eq!(frame.payload()[63], 9 ^ 1);
        // Of a pull request, the frame's.
        let last = pull.len() - 1;
        pull[last] ^= 1;
        assert!(matches!(
            FrameDecoder::new().decode(&mut pull),
            Err(WireError::ChecksumMismatch { .. })
        ));
        // A record frame's length is covered: one more block is a checksum failure, not a
        // frame that swallowed the next one's first bytes.
        let mut longer = BytesMut::new();
        FrameEncoder::new()
            .encode(
                &mut longer,
                request.response(ErrorCode::Ok),
                &pull_response,
                &[9; 64],
            )
            .unwrap();
        let length = u32::from_le_bytes(longer[..4].try_into().unwrap()) + 8;
        longer[..4].copy_from_slice(&length.to_le_bytes());
        longer.extend_from_slice(&[0; 8]);
        assert!(matches!(
            FrameDecoder::new().decode(&mut longer),
            Err(WireError::ChecksumMismatch { .. })
        ));
        assert!(payload_is_records(
            FrameKind::Request,
            Opcode::Produce.as_u16()
        ));
        assert!(payload_is_records(
            FrameKind::OneWay,
            Opcode::Produce.as_u16()
        ));
        assert!(payload_is_records(
            FrameKind::Response,
            Opcode::Pull.as_u16()
        ));
        assert!(!payload_is_records(
            FrameKind::Response,
            Opcode::Produce.as_u16()
        ));
        assert!(!payload_is_records(
            FrameKind::Request,
            Opcode::Pull.as_u16()
        ));
    }

    #[test]
    fn payload_is_not_copied_out_of_the_receive_buffer() {
        let mut buffer = encoded_request(&[7; 100]);
        let range = buffer.as_ptr() as usize..buffer.as_ptr() as usize + buffer.len();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert!(range.contains(&(frame.payload().as_ptr() as usize)));
    }

    #[test]
    fn head_plus_payload_equals_whole_frame() {
        let payload = [1, 2, 3, 4, 5];
        let mut head = BytesMut::new();
        FrameEncoder::new()
            .encode_head(
                &mut head,
                Envelope::request(Opcode::Pull, RequestId(7)),
                &pull_request(),
                &payload,
            )
            .unwrap();
        head.extend_from_slice(&payload);
        assert_eq!(head, encoded_request(&payload));
    }

    #[test]
    fn frames_decode_one_byte_at_a_time() {
        let mut stream = encoded_request(b"first");
        stream.extend_from_slice(&encoded_request(b"second"));
        let decoder = FrameDecoder::new();
        let mut buffer = BytesMut::new();
        let mut payloads = Vec::new();
        for byte in stream.iter() {
            buffer.put_u8(*byte);
            while let Some(frame) = decoder.decode(&mut buffer).unwrap() {
                payloads.push(frame.into_payload());
            }
        }
        assert_eq!(payloads, [&b"first"[..], &b"second"[..]]);
        assert!(buffer.is_empty());
    }

    #[test]
    fn response_echoes_request_and_reads_its_header() {
        let request = Envelope::request(Opcode::Pull, RequestId(9));
        let response = PullResponse {
            status: PullStatus::Found,
            next_offset: QueueOffset(50),
            min_offset: QueueOffset(0),
            max_offset: QueueOffset(60),
            record_count: 8,
        };
        let mut buffer = BytesMut::new();
        let encoder = FrameEncoder::new();
        encoder
            .encode(
                &mut buffer,
                request.response(ErrorCode::Ok),
                &response,
                b"records",
            )
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert_eq!(frame.kind(), FrameKind::Response);
        assert_eq!(frame.request_id(), RequestId(9));
        assert_eq!(
            frame.deserialize_header::<PullResponse>().unwrap(),
            response
        );
        // The request type is refused on a response frame.
        assert!(matches!(
            frame.header::<PullRequest>(),
            Err(WireError::UnexpectedHeader { .. })
        ));
        assert!(frame.error_detail().is_err());
    }

    #[test]
    fn error_response_carries_code_and_detail() {
        let request = Envelope::request(Opcode::Pull, RequestId(11));
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode_error(
                &mut buffer,
                request,
                ErrorCode::TopicNotFound,
                "no topic orders",
            )
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert_eq!(frame.error_code(), Ok(ErrorCode::TopicNotFound));
        assert_eq!(frame.request_id(), RequestId(11));
        assert_eq!(frame.error_detail().unwrap().message, "no topic orders");
        assert!(matches!(
            frame.header::<PullResponse>(),
            Err(WireError::UnexpectedHeader { .. })
        ));
    }

    #[test]
    fn unknown_error_code_in_a_response_decodes_and_is_a_failure() {
        let request = Envelope::request(Opcode::Pull, RequestId(1));
        let mut response = request.response(ErrorCode::Internal);
        response.error_code = 65_000;
        let detail = header::header_bytes(&ErrorDetail::default()).unwrap();
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode_raw(&mut buffer, response, &detail, &[])
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert_eq!(frame.error_code(), Err(UnknownErrorCode(65_000)));
        assert!(frame.error_detail().is_ok());
    }

    #[test]
    fn unknown_opcode_decodes_so_the_server_can_answer_it() {
        let mut envelope = Envelope::request(Opcode::Pull, RequestId(5));
        envelope.opcode = 9_999;
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode_raw(&mut buffer, envelope, &[], &[])
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        assert_eq!(
            frame.opcode(),
            Err(WireError::UnknownOpcode { opcode: 9_999 })
        );
        let answer = frame.envelope().response(ErrorCode::UnknownOpcode);
        assert_eq!(answer.opcode_number(), 9_999);
        assert_eq!(answer.request_id(), RequestId(5));
    }

    #[test]
    fn oversized_length_is_refused_before_anything_is_reserved() {
        let decoder = FrameDecoder::with_max_frame_bytes(MIN_MAX_FRAME_BYTES);
        let mut buffer = encoded_request(&[]);
        buffer[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        buffer.truncate(PREFIX_BYTES);
        let capacity = buffer.capacity();
        assert_eq!(
            decoder.decode(&mut buffer),
            Err(WireError::FrameTooLarge {
                frame_bytes: u64::from(u32::MAX) + 4,
                max_frame_bytes: MIN_MAX_FRAME_BYTES,
            })
        );
        assert_eq!(buffer.capacity(), capacity);
        assert_eq!(buffer.len(), PREFIX_BYTES);
    }

    #[test]
    fn frame_at_exactly_the_limit_decodes_and_one_more_block_does_not() {
        let limit = MIN_MAX_FRAME_BYTES;
        let encoder = FrameEncoder::with_max_frame_bytes(limit);
        let decoder = FrameDecoder::with_max_frame_bytes(limit);
        let envelope = Envelope::one_way(Opcode::Pull);
        let header = header::header_bytes(&pull_request()).unwrap();
        let fits = limit - FIXED_BYTES - header.len();
        let payload = vec![1; fits];
        let mut buffer = BytesMut::new();
        encoder
            .encode_raw(&mut buffer, envelope, &header, &payload)
            .unwrap();
        assert_eq!(buffer.len(), limit);
        assert!(decoder.decode(&mut buffer).unwrap().is_some());

        let too_big = vec![1; fits + 1];
        let result = encoder.encode_raw(&mut buffer, envelope, &header, &too_big);
        assert!(matches!(result, Err(WireError::FrameTooLarge { .. })));
        assert!(
            buffer.is_empty(),
            "a refused encode leaves the buffer as it was"
        );
        let result = encoder.encode(&mut buffer, envelope, &pull_request(), &too_big);
        assert!(matches!(result, Err(WireError::FrameTooLarge { .. })));
        assert!(buffer.is_empty());

        // A peer with a larger limit sends it; this decoder refuses it from its prefix.
        FrameEncoder::new()
            .encode_raw(&mut buffer, envelope, &header, &too_big)
            .unwrap();
        assert!(matches!(
            decoder.decode(&mut buffer),
            Err(WireError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn typed_encode_refuses_a_header_of_another_operation() {
        let mut buffer = BytesMut::new();
        let result = FrameEncoder::new().encode(
            &mut buffer,
            Envelope::request(Opcode::Produce, RequestId(1)),
            &pull_request(),
            &[],
        );
        assert!(matches!(result, Err(WireError::UnexpectedHeader { .. })));
        assert!(buffer.is_empty());
    }

    #[test]
    fn each_fixed_field_is_checked() {
        let decoder = FrameDecoder::new();
        let valid = encoded_request(b"payload");
        let decode_with = |change: &dyn Fn(&mut BytesMut)| {
            let mut buffer = valid.clone();
            change(&mut buffer);
            decoder.decode(&mut buffer)
        };
        assert_eq!(
            decode_with(&|b| b[OFFSET_MAGIC] ^= 1),
            Err(WireError::BadMagic { found: MAGIC ^ 1 })
        );
        assert_eq!(
            decode_with(&|b| b[OFFSET_VERSION] = 2),
            Err(WireError::UnsupportedVersion { found: 2 })
        );
        assert_eq!(
            decode_with(&|b| b[OFFSET_KIND] = 0),
            Err(WireError::BadKind { found: 0 })
        );
        assert_eq!(
            decode_with(&|b| b[..4].copy_from_slice(&20u32.to_le_bytes())),
            Err(WireError::FrameTooShort { frame_length: 20 })
        );
        assert!(matches!(
            decode_with(&|b| b[0] += 1),
            Err(WireError::FrameNotPadded { .. })
        ));
        assert_eq!(
            decode_with(&|b| b[OFFSET_RESERVED + 1] = 4),
            Err(WireError::ReservedBitsSet {
                reserved: [0, 4, 0]
            })
        );
        assert_eq!(
            decode_with(&|b| b[OFFSET_ERROR_CODE] = 1),
            Err(WireError::ErrorCodeOutsideResponse {
                kind: FrameKind::Request,
                error_code: 1
            })
        );
        assert!(matches!(
            decode_with(&|b| b[OFFSET_PADDING_LENGTH] = 8),
            Err(WireError::LengthsInconsistent { .. })
        ));
        assert!(matches!(
            decode_with(&|b| b[OFFSET_HEADER_LENGTH + 3] = 1),
            Err(WireError::LengthsInconsistent { .. })
        ));
        assert!(matches!(
            decode_with(&|b| {
                let last = b.len() - 1;
                b[last] ^= 0x10;
            }),
            Err(WireError::ChecksumMismatch { .. })
        ));
        // Same stream, bytes arriving one by one: the same verdict.
        let mut broken = valid.clone();
        broken[OFFSET_VERSION] = 2;
        let mut buffer = BytesMut::new();
        let mut verdict = Ok(None);
        for byte in broken.iter() {
            buffer.put_u8(*byte);
            verdict = decoder.decode(&mut buffer);
            if verdict.is_err() {
                break;
            }
        }
        assert_eq!(verdict, Err(WireError::UnsupportedVersion { found: 2 }));
    }

    #[test]
    fn nonzero_padding_with_a_valid_crc_is_refused() {
        // Build a frame whose padding is not zero but whose CRC matches it.
        let mut buffer = encoded_request(b"p");
        let padding_length = usize::from(buffer[OFFSET_PADDING_LENGTH]);
        assert!(padding_length > 0, "test needs a padded frame");
        let header_length = read_u32(&buffer, OFFSET_HEADER_LENGTH) as usize;
        buffer[FIXED_BYTES + header_length] = 1;
        let crc = frame_crc(&buffer[..FIXED_BYTES], &buffer[FIXED_BYTES..], &[]);
        buffer[OFFSET_CRC..FIXED_BYTES].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            FrameDecoder::new().decode(&mut buffer),
            Err(WireError::BadPadding)
        );
    }

    #[test]
    fn needs_more_data_reserves_only_the_frame() {
        let whole = encoded_request(&[9; 3000]);
        let mut buffer = BytesMut::from(&whole[..FIXED_BYTES]);
        assert_eq!(FrameDecoder::new().decode(&mut buffer), Ok(None));
        assert!(buffer.capacity() >= whole.len());
        let mut tiny = BytesMut::from(&whole[..3]);
        let capacity = tiny.capacity();
        assert_eq!(FrameDecoder::new().decode(&mut tiny), Ok(None));
        assert_eq!(tiny.capacity(), capacity);
    }

    #[test]
    #[should_panic(expected = "max_frame_bytes")]
    fn decoder_limit_outside_the_allowed_range_panics() {
        FrameDecoder::with_max_frame_bytes(ABSOLUTE_MAX_FRAME_BYTES + 1);
    }

    #[test]
    fn magic_is_the_bytes_sw() {
        let buffer = encoded_request(&[]);
        assert_eq!(&buffer[OFFSET_MAGIC..OFFSET_VERSION], b"SW");
    }
}
