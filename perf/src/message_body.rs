//! What the load generator puts in a message body, and how it recognizes its own messages
//! when it reads them back: [`MessageId`], [`fill_body`], [`parse_body`],
//! [`filler_matches`], [`body_crc`].
//!
//! # Body layout (little endian)
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | [`MessageId`]: producer index << 40 \| sequence number |
//! | 8..16 | born: microseconds since the Unix epoch when the producer filled the body (end-to-end latency = consume time − born) |
//! | 16.. | filler: a slice of a fixed pseudo-random pattern ([`PATTERN_BYTES`], xorshift64*), starting at an offset the message id picks (cycling if longer) |
//!
//! Copying a slice of one pattern costs what a `memcpy` costs; generating a fresh stream
//! per message took a tenth of a producer thread's time at 1 KiB. The filler depends on the
//! id only, so any body can be checked on its own
//! ([`filler_matches`]), even one that no ledger acknowledges; the born time is covered by
//! the ledger's CRC ([`body_crc`], CRC-32/ISO-HDLC of the whole body via `crc32fast`).
//!
//! This module is pure: no I/O; the only clock read is [`now_micros`], which callers use
//! (or not) to pick the born time.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

/// Bits of a [`MessageId`] holding the producer's sequence number.
pub const SEQUENCE_BITS: u32 = 40;
/// Highest sequence number a producer may use (about 10^12).
pub const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;
/// Producers one run can have: the 24 bits above the sequence.
pub const MAX_PRODUCERS: u32 = 1 << (64 - SEQUENCE_BITS);
/// Bytes of the body before the filler: id and born time. Bodies are at least this long.
pub const BODY_HEADER_BYTES: usize = 16;
/// The smallest body [`fill_body`] writes.
pub const MIN_BODY_BYTES: usize = BODY_HEADER_BYTES;
/// Mixed into the id to seed the filler, so that id 0 still gets a non-zero xorshift state.
pub const FILLER_SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

// The producer index gets the bits above the sequence, and must fit a u32.
const _: () = assert!(SEQUENCE_BITS < 64 && 64 - SEQUENCE_BITS <= 32);

/// Identifies one message of one run: which producer sent it and its place in that
/// producer's sequence (0, 1, 2, ...). Producer `p`'s sequence numbers must increase with
/// the queue offset within a queue; verification checks that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

impl MessageId {
    /// The id of message `sequence` of producer `producer`. Panics if either is out of
    /// range ([`MAX_PRODUCERS`], [`MAX_SEQUENCE`]): the driver must stop before that.
    pub fn new(producer: u32, sequence: u64) -> MessageId {
        assert!(
            producer < MAX_PRODUCERS,
            "producer index {producer} does not fit a message id (at most {})",
            MAX_PRODUCERS - 1
        );
        assert!(
            sequence <= MAX_SEQUENCE,
            "sequence number {sequence} does not fit a message id (at most {MAX_SEQUENCE})"
        );
        MessageId((u64::from(producer) << SEQUENCE_BITS) | sequence)
    }

    /// The producer's index.
    pub fn producer(self) -> u32 {
        // The shift leaves 24 bits.
        (self.0 >> SEQUENCE_BITS) as u32
    }

    /// The producer's sequence number.
    pub fn sequence(self) -> u64 {
        self.0 & MAX_SEQUENCE
    }
}

impl fmt::Display for MessageId {
    /// `producer:sequence`, e.g. `3:1017`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.producer(), self.sequence())
    }
}

impl Serialize for MessageId {
    /// As its `producer:sequence` text.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Microseconds since the Unix epoch now (0 if the clock is before 1970).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
        })
}

/// Replaces `out`'s contents with a `size`-byte body for message `id`, born now.
/// Panics if `size` is below [`MIN_BODY_BYTES`] (the command line refuses such sizes).
pub fn fill_body(id: MessageId, size: usize, out: &mut Vec<u8>) {
    fill_body_at(id, now_micros(), size, out);
}

/// [`fill_body`] with the born time given (microseconds since the Unix epoch).
pub fn fill_body_at(id: MessageId, born_us: u64, size: usize, out: &mut Vec<u8>) {
    assert!(
        size >= MIN_BODY_BYTES,
        "a body of {size} bytes cannot hold the {MIN_BODY_BYTES}-byte id and born time"
    );
    out.clear();
    out.reserve(size);
    out.extend_from_slice(&id.0.to_le_bytes());
    out.extend_from_slice(&born_us.to_le_bytes());
    let pattern = pattern();
    let mut start = pattern_start(id);
    while out.len() < size {
        let take = (PATTERN_BYTES - start).min(size - out.len());
        out.extend_from_slice(&pattern[start..start + take]);
        start = 0;
    }
}

/// The id and born time (microseconds since the Unix epoch) at the start of `body`, or
/// `None` if it is shorter than [`BODY_HEADER_BYTES`]. Cheap: the filler is not looked at.
pub fn parse_body(body: &[u8]) -> Option<(MessageId, u64)> {
    let id = u64::from_le_bytes(body.get(0..8)?.try_into().ok()?);
    let born_us = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    Some((MessageId(id), born_us))
}

/// Whether `body` is a well-formed load generator body: long enough, and its filler is the
/// one its id seeds. Catches damage and foreign messages without a ledger.
pub fn filler_matches(body: &[u8]) -> bool {
    let Some((id, _)) = parse_body(body) else {
        return false;
    };
    let pattern = pattern();
    let mut start = pattern_start(id);
    let mut rest = &body[BODY_HEADER_BYTES..];
    while !rest.is_empty() {
        let take = (PATTERN_BYTES - start).min(rest.len());
        if rest[..take] != pattern[start..start + take] {
            return false;
        }
        rest = &rest[take..];
        start = 0;
    }
    true
}

/// Bytes of the filler pattern.
pub const PATTERN_BYTES: usize = 64 << 10;

/// The filler pattern: [`PATTERN_BYTES`] of xorshift64* output, made once.
fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut filler = Filler::new(MessageId(0));
        let mut pattern = Vec::with_capacity(PATTERN_BYTES);
        while pattern.len() < PATTERN_BYTES {
            pattern.extend_from_slice(&filler.next_word().to_le_bytes());
        }
        pattern
    })
}

/// Where in the pattern the filler of `id` starts: an 8-byte aligned offset mixed from
/// the id, so consecutive ids get unrelated fillers.
fn pattern_start(id: MessageId) -> usize {
    let mixed = (id.0 ^ FILLER_SEED_MIX).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) as usize % (PATTERN_BYTES / 8)) * 8
}

/// The checksum the ledger keeps of a body: CRC-32 (ISO-HDLC, `crc32fast`) of all of it.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body)
}

/// The filler's byte stream: xorshift64* seeded by the message id.
struct Filler {
    state: u64,
}

impl Filler {
    fn new(id: MessageId) -> Filler {
        let seed = id.0 ^ FILLER_SEED_MIX;
        // xorshift's state must not be zero; only id == FILLER_SEED_MIX gives that.
        Filler {
            state: if seed == 0 { FILLER_SEED_MIX } else { seed },
        }
    }

    fn next_word(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_packs_producer_and_sequence() {
        let id = MessageId::new(3, 1017);
        assert_eq!((id.producer(), id.sequence()), (3, 1017));
        assert_eq!(id.0, (3 << 40) | 1017);
        assert_eq!(id.to_string(), "3:1017");
        let last = MessageId::new(MAX_PRODUCERS - 1, MAX_SEQUENCE);
        assert_eq!(last.0, u64::MAX);
        assert_eq!(
            (last.producer(), last.sequence()),
            (MAX_PRODUCERS - 1, MAX_SEQUENCE)
        );
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"3:1017\"");
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn sequence_past_forty_bits_is_refused() {
        MessageId::new(0, MAX_SEQUENCE + 1);
    }

    #[test]
    fn body_round_trips_id_and_born_time_at_every_size() {
        let mut body = Vec::new();
        for size in [16, 17, 23, 24, 100, 1024, 4099] {
            let id = MessageId::new(7, size as u64);
            fill_body_at(id, 1_700_000_000_123_456, size, &mut body);
            assert_eq!(body.len(), size);
            assert_eq!(parse_body(&body), Some((id, 1_700_000_000_123_456)));
            assert!(filler_matches(&body), "size {size}");
        }
    }

    #[test]
    fn filler_is_deterministic_per_id_and_differs_between_ids() {
        let (mut first, mut again, mut other) = (Vec::new(), Vec::new(), Vec::new());
        fill_body_at(MessageId::new(1, 5), 10, 256, &mut first);
        fill_body_at(MessageId::new(1, 5), 99, 256, &mut again);
        fill_body_at(MessageId::new(1, 6), 10, 256, &mut other);
        assert_eq!(first[16..], again[16..], "the filler ignores the born time");
        assert_ne!(first[16..], other[16..]);
        assert_ne!(
            body_crc(&first),
            body_crc(&again),
            "the CRC covers the born time"
        );
    }

    #[test]
    fn damage_and_short_bodies_are_recognized() {
        let mut body = Vec::new();
        fill_body_at(MessageId::new(2, 9), 1, 100, &mut body);
        let mut flipped = body.clone();
        flipped[99] ^= 0x01;
        assert!(!filler_matches(&flipped));
        let mut renamed = body.clone();
        renamed[0] ^= 0x01; // another id: the filler no longer matches it
        assert!(!filler_matches(&renamed));
        assert_eq!(parse_body(&body[..15]), None);
        assert!(!filler_matches(&body[..15]));
        assert!(
            filler_matches(&body[..16]),
            "a bare header has no filler to disagree"
        );
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_micros() > 1_577_836_800_000_000);
    }

    #[test]
    #[should_panic(expected = "cannot hold")]
    fn bodies_below_the_header_size_are_refused() {
        fill_body_at(MessageId(0), 0, 15, &mut Vec::new());
    }
}
