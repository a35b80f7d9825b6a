//! Property test of [`FrameDecoder`] and the header accessors, run in the normal suite: the
//! quick, seeded twin of the cargo-fuzz target `fuzz/fuzz_targets/frame_decoder.rs`.
//!
//! It feeds the decoder, in random chunks, (1) valid frames and streams of frames, which
//! must come back exactly; (2) valid frames with one mutation (bit flips, byte bursts,
//! truncation, a changed length field, an inserted or deleted byte, a rewritten fixed
//! field), which must never come back as a frame; (3) random bytes; and (4) well-framed
//! frames with garbage or bit-flipped headers, whose header checks must fail cleanly. In
//! every case: no panic; every decoded frame is within the limit and re-encodes to exactly
//! the bytes it came from (which also checks the encoder against the layout table, via
//! `layout_frame`); errors are typed and stable (a second call gives the same error on an
//! untouched buffer); and the buffer never grows past the limit whatever the length field
//! claims.
//!
//! The seed is printed; `SPILLWAY_WIRE_SEED=<seed> cargo test -p spillway-wire frame_fuzz`
//! replays a run exactly.

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::frame::{Frame, FrameDecoder, FIXED_BYTES, MAGIC, VERSION};
use crate::message::test_support::all_samples;
use crate::message::validate_header;
use crate::{FrameEncoder, WireError, ALL_OPCODES};

/// Cases per run (all kinds together).
const CASES: u64 = 10_000;
/// The decoder's limit in this test: small, so oversized lengths are common.
const MAX_FRAME_BYTES: usize = 16 << 10;
/// Frames stay below ~11 KiB, where CRC-32 is guaranteed to catch any 3 flipped bits and any
/// burst of up to 32 bits, so "a mutated frame never decodes" holds without luck (except
/// for a changed length, which a CRC can only catch with probability 1 − 2⁻³²).
const MAX_PAYLOAD_BYTES: usize = 4 << 10;

fn seed() -> u64 {
    match std::env::var("SPILLWAY_WIRE_SEED") {
        Ok(text) => text.parse().expect("SPILLWAY_WIRE_SEED must be a u64"),
        Err(_) => rand::random(),
    }
}

/// A frame built straight from the layout table in `frame.rs`, independently of the
/// encoder.
#[allow(clippy::too_many_arguments)]
fn layout_frame(
    kind: u8,
    request_id: u64,
    opcode: u16,
    error_code: u16,
    header: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let unpadded = 32 + header.len() + payload.len();
    let padding = (8 - unpadded % 8) % 8;
    let mut frame = Vec::with_capacity(unpadded + padding);
    frame.extend_from_slice(&((unpadded + padding - 4) as u32).to_le_bytes());
    frame.extend_from_slice(b"SW");
    frame.push(1);
    frame.push(kind);
    frame.extend_from_slice(&request_id.to_le_bytes());
    frame.extend_from_slice(&opcode.to_le_bytes());
    frame.extend_from_slice(&error_code.to_le_bytes());
    frame.push(padding as u8);
    frame.extend_from_slice(&[0; 3]);
    frame.extend_from_slice(&(header.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(header);
    frame.extend(std::iter::repeat_n(0, padding));
    frame.extend_from_slice(payload);
    let mut hasher = crc32fast::Hasher::new();
    if is_record_frame(&frame) {
        // Records carry their own CRCs: the frame's covers the length, not the payload.
        hasher.update(&frame[..28]);
        hasher.update(&frame[32..32 + header.len() + padding]);
    } else {
        hasher.update(&frame[4..28]);
        hasher.update(&frame[32..]);
    }
    let crc = hasher.finalize();
    frame[28..32].copy_from_slice(&crc.to_le_bytes());
    frame
}

/// Whether a laid-out frame is a produce request (kind 1 or 3, opcode 100) or a pull
/// response (kind 2, opcode 101): a frame whose payload the CRC leaves to the records.
fn is_record_frame(frame: &[u8]) -> bool {
    let opcode = u16::from_le_bytes([frame[16], frame[17]]);
    matches!((frame[7], opcode), (1 | 3, 100) | (2, 101))
}

/// Where a laid-out frame's payload starts (after the header and the padding).
fn payload_start(frame: &[u8]) -> usize {
    let header_length = u32::from_le_bytes([frame[24], frame[25], frame[26], frame[27]]);
    32 + header_length as usize + usize::from(frame[20])
}

/// What feeding some bytes to a decoder produced.
#[derive(Debug)]
struct Outcome {
    frames: Vec<Frame>,
    error: Option<WireError>,
    leftover: usize,
}

/// Feeds `bytes` in random chunks, decoding after each until it needs more or fails; checks
/// the per-call invariants.
fn feed(rng: &mut StdRng, bytes: &[u8], context: &str) -> Outcome {
    let decoder = FrameDecoder::with_max_frame_bytes(MAX_FRAME_BYTES);
    let mut buffer = BytesMut::new();
    let encoder = FrameEncoder::with_max_frame_bytes(MAX_FRAME_BYTES);
    let mut frames = Vec::new();
    let mut consumed = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let chunk = if rng.gen_bool(0.3) {
            rest.len()
        } else {
            rng.gen_range(1..=rest.len().min(64))
        };
        buffer.extend_from_slice(&rest[..chunk]);
        rest = &rest[chunk..];
        loop {
            let capacity_before = buffer.capacity();
            let length_before = buffer.len();
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    // Within the limit, and canonical: it re-encodes to the bytes it came from.
                    let frame_bytes = frame.encoded_len();
                    assert!(frame_bytes <= MAX_FRAME_BYTES, "{context}");
                    let mut encoded = BytesMut::new();
                    encoder.encode_frame(&mut encoded, &frame).unwrap();
                    assert_eq!(
                        &encoded[..],
                        &bytes[consumed..consumed + frame_bytes],
                        "{context}"
                    );
                    consumed += frame_bytes;
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(
                        buffer.capacity() <= capacity_before.max(2 * MAX_FRAME_BYTES),
                        "{context}: reserved {} bytes",
                        buffer.capacity()
                    );
                    break;
                }
                Err(error) => {
                    // Untouched buffer, same verdict again.
                    assert_eq!(buffer.len(), length_before, "{context}");
                    assert_eq!(buffer.capacity(), capacity_before, "{context}");
                    assert_eq!(decoder.decode(&mut buffer), Err(error.clone()), "{context}");
                    return Outcome {
                        frames,
                        error: Some(error),
                        leftover: buffer.len(),
                    };
                }
            }
        }
    }
    Outcome {
        frames,
        error: None,
        leftover: buffer.len(),
    }
}

fn random_payload(rng: &mut StdRng) -> Vec<u8> {
    let length = match rng.gen_range(0..4) {
        0 => 0,
        1 => rng.gen_range(1..16),
        _ => rng.gen_range(0..MAX_PAYLOAD_BYTES),
    };
    (0..length).map(|_| rng.gen()).collect()
}

/// A valid encoded frame: a sample header (with its own payload if it needs one, else a
/// random payload, re-encoded with a random request id).
fn valid_frame(rng: &mut StdRng, samples: &[BytesMut]) -> Vec<u8> {
    let sample = &samples[rng.gen_range(0..samples.len())];
    let frame = FrameDecoder::new()
        .decode(&mut sample.clone())
        .unwrap()
        .unwrap();
    let payload = if frame.payload().is_empty() {
        random_payload(rng)
    } else {
        frame.payload().to_vec()
    };
    let envelope = frame.envelope();
    let request_id = if envelope.kind() == crate::FrameKind::OneWay {
        0
    } else {
        rng.gen()
    };
    layout_frame(
        envelope.kind() as u8,
        request_id,
        envelope.opcode_number(),
        envelope.error_code_number(),
        frame.header_bytes(),
        &payload,
    )
}

/// Applies one mutation that changes at least one byte of the frame; returns its
/// description and, if the decoder must refuse the result as oversized, the frame size its
/// length claims.
fn mutate(rng: &mut StdRng, frame: &mut Vec<u8>) -> (String, Option<u64>) {
    let original = frame.clone();
    loop {
        let description = match rng.gen_range(0..7) {
            0 => {
                let flips = rng.gen_range(1..=3);
                let mut bits = Vec::new();
                for _ in 0..flips {
                    let bit = rng.gen_range(0..frame.len() * 8);
                    frame[bit / 8] ^= 1 << (bit % 8);
                    bits.push(bit);
                }
                format!("flip bits {bits:?}")
            }
            1 => {
                let length = rng.gen_range(1..=4.min(frame.len()));
                let start = rng.gen_range(0..=frame.len() - length);
                for byte in &mut frame[start..start + length] {
                    *byte = rng.gen();
                }
                format!("overwrite {length} bytes at {start}")
            }
            2 => {
                let keep = rng.gen_range(0..frame.len());
                frame.truncate(keep);
                format!("truncate to {keep}")
            }
            3 => {
                let length: u32 = match rng.gen_range(0..4) {
                    0 => rng.gen(),
                    1 => rng.gen_range(0..64),
                    2 => (frame.len() as u32 - 4).wrapping_add(8 * rng.gen_range(1..4)),
                    _ => (frame.len() as u32 - 4).wrapping_sub(8 * rng.gen_range(1..4)),
                };
                frame[..4].copy_from_slice(&length.to_le_bytes());
                format!("length := {length}")
            }
            4 => {
                // Inside the frame: a byte appended after its end is just the next frame's.
                let at = rng.gen_range(0..frame.len());
                frame.insert(at, rng.gen());
                format!("insert a byte at {at}")
            }
            5 => {
                let at = rng.gen_range(0..frame.len());
                frame.remove(at);
                format!("delete the byte at {at}")
            }
            _ => {
                let at = rng.gen_range(4..FIXED_BYTES);
                frame[at] = rng.gen();
                format!("fixed byte {at} := {}", frame[at])
            }
        };
        // Changed within the original frame's extent (bytes beyond it belong to whatever
        // follows: inserting a zero into trailing zero padding changes nothing).
        if frame.len() < original.len() || frame[..original.len()] != original[..] {
            let oversized = oversized_length(frame);
            return (description, oversized);
        }
        frame.clone_from(&original);
    }
}

/// The length the frame's prefix claims, if it is over the limit and the bytes before
/// the length checks (magic, version, kind) are intact, so the decoder must say
/// `FrameTooLarge`.
fn oversized_length(frame: &[u8]) -> Option<u64> {
    if frame.len() < 8
        || frame[4..6] != MAGIC.to_le_bytes()
        || frame[6] != VERSION
        || !(1..=3).contains(&frame[7])
    {
        return None;
    }
    let frame_bytes = u64::from(u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]])) + 4;
    (frame_bytes > MAX_FRAME_BYTES as u64).then_some(frame_bytes)
}

#[test]
fn frame_decoder_survives_valid_mutated_and_random_input() {
    let seed = seed();
    println!("frame_fuzz seed {seed} (replay with SPILLWAY_WIRE_SEED={seed})");
    let samples = all_samples().frames;
    // valid, mutated, random, bad-header; and mutations of a record payload only.
    let mut counts = [0u64; 5];
    let mut mutated_verdicts = std::collections::BTreeMap::<String, u64>::new();
    let mut bad_headers_accepted = 0u64;
    for case in 0..CASES {
        let case_seed = seed.wrapping_add(case.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let rng = &mut StdRng::seed_from_u64(case_seed);
        let kind = rng.gen_range(0..10);
        let context = format!("seed {seed} case {case} (case seed {case_seed}), kind {kind}");
        match kind {
            // Valid frames, alone or as a stream: exactly the frames come back.
            0..=2 => {
                counts[0] += 1;
                let frames: Vec<Vec<u8>> = (0..rng.gen_range(1..=3))
                    .map(|_| valid_frame(rng, &samples))
                    .collect();
                let stream = frames.concat();
                let outcome = feed(rng, &stream, &context);
                assert_eq!(outcome.error, None, "{context}");
                assert_eq!(outcome.leftover, 0, "{context}");
                assert_eq!(outcome.frames.len(), frames.len(), "{context}");
                for (decoded, bytes) in outcome.frames.iter().zip(&frames) {
                    let reference = FrameDecoder::new()
                        .decode(&mut BytesMut::from(&bytes[..]))
                        .unwrap()
                        .unwrap();
                    assert_eq!(*decoded, reference, "{context}");
                    validate_header(decoded).unwrap_or_else(|e| panic!("{context}: {e}"));
                }
            }
            // One mutation: never a frame, unless it only touched the payload of a frame
            // whose payload is records (checked by its receiver, record by record);
            // oversized lengths refused as such.
            3..=6 => {
                counts[1] += 1;
                let original = valid_frame(rng, &samples);
                let mut frame = original.clone();
                let (mutation, oversized) = mutate(rng, &mut frame);
                let context = format!("{context}, {mutation}");
                let outcome = feed(rng, &frame, &context);
                let covered = payload_start(&original);
                if is_record_frame(&original)
                    && frame.len() >= covered
                    && frame[..covered] == original[..covered]
                {
                    counts[4] += 1;
                    if frame.len() >= original.len() {
                        assert_eq!(outcome.frames.len(), 1, "{context}: {outcome:?}");
                        assert_eq!(
                            &outcome.frames[0].payload()[..],
                            &frame[covered..original.len()],
                            "{context}"
                        );
                    } else {
                        assert!(outcome.frames.is_empty(), "{context}: decoded {outcome:?}");
                        assert_eq!(outcome.error, None, "{context}");
                    }
                    continue;
                }
                assert!(outcome.frames.is_empty(), "{context}: decoded {outcome:?}");
                let verdict = match &outcome.error {
                    Some(error) => format!("{:?}", error.error_code()),
                    None => "needs more".to_owned(),
                };
                *mutated_verdicts.entry(verdict).or_default() += 1;
                if let Some(frame_bytes) = oversized {
                    assert_eq!(
                        outcome.error,
                        Some(WireError::FrameTooLarge {
                            frame_bytes,
                            max_frame_bytes: MAX_FRAME_BYTES
                        }),
                        "{context}"
                    );
                }
            }
            // Random bytes (sometimes behind a valid prefix, to get past the first checks).
            7 => {
                counts[2] += 1;
                let length = rng.gen_range(0..2048);
                let mut bytes: Vec<u8> = (0..length).map(|_| rng.gen()).collect();
                if bytes.len() >= 8 && rng.gen_bool(0.5) {
                    let frame_length = ((bytes.len() / 8 * 8) as u32).saturating_sub(4).max(28);
                    bytes[..4].copy_from_slice(&frame_length.to_le_bytes());
                    bytes[4..6].copy_from_slice(&MAGIC.to_le_bytes());
                    bytes[6] = VERSION;
                    bytes[7] = rng.gen_range(1..=3);
                }
                let outcome = feed(rng, &bytes, &context);
                for frame in &outcome.frames {
                    let _ = validate_header(frame);
                }
            }
            // Good framing, bad header: garbage or bit-flipped sample headers under a valid
            // CRC. Header checks must fail cleanly (or pass) and never panic.
            _ => {
                counts[3] += 1;
                let sample = &samples[rng.gen_range(0..samples.len())];
                let frame = FrameDecoder::new()
                    .decode(&mut sample.clone())
                    .unwrap()
                    .unwrap();
                let mut header = frame.header_bytes().to_vec();
                if header.is_empty() || rng.gen_bool(0.3) {
                    header = (0..rng.gen_range(0..256)).map(|_| rng.gen()).collect();
                } else {
                    for _ in 0..rng.gen_range(1..=4) {
                        let bit = rng.gen_range(0..header.len() * 8);
                        header[bit / 8] ^= 1 << (bit % 8);
                    }
                }
                let opcode = if rng.gen_bool(0.9) {
                    ALL_OPCODES[rng.gen_range(0..ALL_OPCODES.len())].as_u16()
                } else {
                    rng.gen()
                };
                let kind = rng.gen_range(1..=3u8);
                let error_code = if kind == 2 && rng.gen_bool(0.2) {
                    rng.gen()
                } else {
                    0
                };
                let payload = if rng.gen_bool(0.5) {
                    frame.payload().to_vec()
                } else {
                    random_payload(rng)
                };
                let bytes = layout_frame(kind, rng.gen(), opcode, error_code, &header, &payload);
                let outcome = feed(rng, &bytes, &context);
                assert_eq!(outcome.error, None, "{context}");
                assert_eq!(outcome.frames.len(), 1, "{context}");
                bad_headers_accepted += u64::from(validate_header(&outcome.frames[0]).is_ok());
            }
        }
    }
    println!(
        "frame_fuzz: {} valid, {} mutated ({} only in a record payload), {} random, \
         {} bad-header cases",
        counts[0], counts[1], counts[4], counts[2], counts[3]
    );
    println!("frame_fuzz: mutated frames refused as {mutated_verdicts:?}");
    println!("frame_fuzz: {bad_headers_accepted} bad-header frames still validated");
    assert!(counts[..4].iter().all(|&count| count > 0));
}
