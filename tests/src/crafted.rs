//! Bytes no well-behaved peer sends: frames built by hand (any opcode number, any header
//! bytes), announced lengths far over the limit, random noise. For the tests of how servers
//! treat bad input.
//!
//! [`frame_bytes`] writes the frame layout of `spillway_wire`'s `frame.rs` itself rather than
//! through `FrameEncoder`, because the encoder only writes what is valid (known opcodes,
//! headers of the right type). A unit test checks that what it writes decodes with the real
//! `FrameDecoder`, so a frame refused by a server is refused for the one flaw a test put in.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use spillway_wire::{ErrorCode, FrameKind, RequestId, FIXED_BYTES, FRAME_ALIGN, MAGIC, VERSION};

use crate::wire_client::WireClient;

/// How long a server may take to close a connection whose stream it cannot read.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Offset of the CRC field in a frame.
pub const CRC_OFFSET: usize = 28;

/// A whole frame: fixed part, `header` as given (not checked), zero padding to
/// [`FRAME_ALIGN`], `payload`, and a correct CRC (over all of it, or, for a frame whose
/// payload is records, over all but the payload, length included).
pub fn frame_bytes(
    kind: FrameKind,
    request_id: u64,
    opcode: u16,
    header: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let unpadded = FIXED_BYTES + header.len() + payload.len();
    let total = unpadded.next_multiple_of(FRAME_ALIGN);
    let padding = total - unpadded;
    let mut frame = Vec::with_capacity(total);
    let frame_length = u32::try_from(total - 4).expect("a crafted frame fits a u32 length");
    frame.extend_from_slice(&frame_length.to_le_bytes());
    frame.extend_from_slice(&MAGIC.to_le_bytes());
    frame.push(VERSION);
    frame.push(kind as u8);
    frame.extend_from_slice(&request_id.to_le_bytes());
    frame.extend_from_slice(&opcode.to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes()); // error code: requests carry none
    frame.push(u8::try_from(padding).expect("padding below 8"));
    frame.extend_from_slice(&[0; 3]); // reserved
    let header_length = u32::try_from(header.len()).expect("a crafted header fits a u32");
    frame.extend_from_slice(&header_length.to_le_bytes());
    frame.extend_from_slice(&[0; 4]); // CRC, filled in below
    frame.extend_from_slice(header);
    frame.extend(std::iter::repeat_n(0u8, padding));
    frame.extend_from_slice(payload);
    assert_eq!(frame.len(), total);
    let mut hasher = crc32fast::Hasher::new();
    if spillway_wire::payload_is_records(kind, opcode) {
        // The records carry their own CRCs: the frame's covers the length, not the payload.
        hasher.update(&frame[..CRC_OFFSET]);
        hasher.update(&frame[FIXED_BYTES..FIXED_BYTES + header.len() + padding]);
    } else {
        hasher.update(&frame[4..CRC_OFFSET]);
        hasher.update(&frame[FIXED_BYTES..]);
    }
    let crc = hasher.finalize();
    frame[CRC_OFFSET..FIXED_BYTES].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// The first 8 bytes of a request frame (length, magic, version, kind) announcing a frame of
/// `frame_bytes` bytes in all: what a server judges the size by before reading further.
pub fn oversize_prefix(frame_bytes: u32) -> Vec<u8> {
    let mut prefix = Vec::new();
    prefix.extend_from_slice(&(frame_bytes - 4).to_le_bytes());
    prefix.extend_from_slice(&MAGIC.to_le_bytes());
    prefix.push(VERSION);
    prefix.push(FrameKind::Request as u8);
    prefix
}

/// `length` random bytes from `seed`, whose bytes 4..6 are anything but the magic (so a
/// server can tell at once that this is not a frame instead of waiting for more).
pub fn noise(seed: u64, length: usize) -> Vec<u8> {
    assert!(length >= 8, "noise shorter than a frame prefix");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; length];
    rng.fill(&mut bytes[..]);
    bytes[4..6].copy_from_slice(&(!MAGIC).to_le_bytes());
    bytes
}

/// Sends `bytes` on a new connection to `address`, then reads until the server closes it:
/// at most one frame may arrive, a connection-error response (request id 0) carrying
/// `expected`. Returns how many arrived: 0 only when the close raced the response (a reset
/// because of bytes the server never read discards what it sent).
pub fn expect_connection_error(address: SocketAddr, bytes: &[u8], expected: ErrorCode) -> usize {
    let mut client = WireClient::connect(address);
    client.set_read_timeout(CLOSE_TIMEOUT);
    if let Err(error) = client.send_raw(bytes) {
        // The server may close before it has read everything; that is a close too.
        assert!(
            matches!(
                error.kind(),
                ErrorKind::BrokenPipe | ErrorKind::ConnectionReset
            ),
            "send to {address}: {error}"
        );
    }
    let mut frames = 0;
    while let Some(frame) = client.read_frame() {
        assert_eq!(
            frame.request_id(),
            RequestId::NONE,
            "a response to a broken stream must be a connection error: {frame:?}"
        );
        assert_eq!(frame.error_code(), Ok(expected), "{frame:?}");
        frames += 1;
    }
    assert!(frames <= 1, "{frames} responses to a broken stream");
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use spillway_wire::header::header_bytes;
    use spillway_wire::message::GetQueueOffsetsRequest;
    use spillway_wire::{FrameDecoder, Opcode, QueueId, WireError, WireHeader};

    fn decode(bytes: &[u8]) -> Result<Option<spillway_wire::Frame>, WireError> {
        FrameDecoder::new().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn crafted_frames_decode_with_the_real_decoder() {
        let request = GetQueueOffsetsRequest {
            topic: "orders".into(),
            queue_id: QueueId(3),
        };
        let header = header_bytes(&request).unwrap();
        let bytes = frame_bytes(
            FrameKind::Request,
            9,
            GetQueueOffsetsRequest::OPCODE.as_u16(),
            &header,
            b"abc",
        );
        let frame = decode(&bytes).unwrap().unwrap();
        assert_eq!(frame.request_id(), RequestId(9));
        assert_eq!(frame.opcode().unwrap(), Opcode::GetQueueOffsets);
        assert_eq!(
            frame
                .deserialize_header::<GetQueueOffsetsRequest>()
                .unwrap(),
            request
        );
        assert_eq!(frame.payload().as_ref(), b"abc");

        // Any opcode number and any header bytes still make a frame.
        let frame = decode(&frame_bytes(FrameKind::Request, 1, 999, &[0xff; 13], &[]))
            .unwrap()
            .unwrap();
        assert!(frame.opcode().is_err());
        assert_eq!(frame.envelope().opcode_number(), 999);
    }

    #[test]
    fn flaws_are_caught_by_the_real_decoder() {
        let mut bytes = frame_bytes(FrameKind::Request, 1, 202, &[1; 16], &[]);
        bytes[FIXED_BYTES] ^= 0xff;
        assert_eq!(
            decode(&bytes).unwrap_err().error_code(),
            ErrorCode::BadFrame
        );
        assert_eq!(
            decode(&oversize_prefix(1 << 30)).unwrap_err().error_code(),
            ErrorCode::FrameTooLarge
        );
        assert_eq!(
            decode(&noise(7, 64)).unwrap_err().error_code(),
            ErrorCode::BadFrame
        );
    }
}
