//! Fuzz target: arbitrary bytes into `FrameDecoder`, in reads of a fuzzer-chosen size, and
//! every frame that decodes through the header accessors.
//!
//! Checks beyond "no panic": a decoded frame is within the limit, re-encodes to exactly the
//! bytes it was decoded from (the encoding is canonical), and an error leaves the buffer
//! untouched. The seeded property test `wire/src/frame_fuzz.rs` runs the same checks in the
//! normal test suite.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use spillway_wire::message::validate_header;
use spillway_wire::{FrameDecoder, FrameEncoder, MIN_MAX_FRAME_BYTES};

/// Small enough that lengths over the limit are easy to reach.
const MAX_FRAME_BYTES: usize = 16 * MIN_MAX_FRAME_BYTES;

fuzz_target!(|input: &[u8]| {
    // The first byte chooses the read size (0: everything at once).
    let Some((&read_size, stream)) = input.split_first() else {
        return;
    };
    let read_size = if read_size == 0 {
        stream.len().max(1)
    } else {
        usize::from(read_size)
    };
    let decoder = FrameDecoder::with_max_frame_bytes(MAX_FRAME_BYTES);
    let encoder = FrameEncoder::with_max_frame_bytes(MAX_FRAME_BYTES);
    let mut buffer = BytesMut::new();
    let mut consumed = 0;
    for read in stream.chunks(read_size) {
        buffer.extend_from_slice(read);
        loop {
            let length_before = buffer.len();
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    let frame_bytes = frame.encoded_len();
                    assert!(frame_bytes <= MAX_FRAME_BYTES);
                    let mut encoded = BytesMut::new();
                    encoder
                        .encode_frame(&mut encoded, &frame)
                        .expect("a decoded frame re-encodes");
                    assert_eq!(&encoded[..], &stream[consumed..consumed + frame_bytes]);
                    consumed += frame_bytes;
                    let _ = frame.opcode();
                    let _ = frame.error_code();
                    if let Err(error) = validate_header(&frame) {
                        assert!(!error.closes_connection());
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    assert_eq!(buffer.len(), length_before);
                    assert!(error.closes_connection());
                    return;
                }
            }
        }
    }
});
