//! The on-disk (and on-wire) record format, version 1.
//!
//! A producer encodes each message once with [`RecordBuilder`]; a batch is simply records laid
//! end to end. The broker validates a batch, then *stamps* it in place — queue id, queue
//! offset, log position, store timestamp — without re-encoding or re-hashing the producer's
//! part, and stores exactly those bytes. Consumers receive the same bytes back.
//!
//! To make stamping cheap the record carries two CRCs (the idea of Kafka's v2 batches, where
//! broker-assigned fields sit outside the CRC-covered part):
//!
//! * `body_crc` covers the producer's part (everything after the 48-byte stamped header). The
//!   producer computes it; the broker verifies it on append and never recomputes it.
//! * `header_crc` covers bytes `8..48` of the stamped header, which include `body_crc`. The
//!   broker computes it when stamping (40 bytes, whatever the message size), so a record whose
//!   header CRC checks out and whose body CRC checks out is intact end to end.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! stamped header (broker)            producer part (covered by body_crc)
//!  0 u32 total_length                 48 i64 born_timestamp_ms
//!  4 u32 header_crc  (crc of 8..48)   56 i64 deliver_at_ms (0 = deliver now)
//!  8 u16 magic 0x5053 ("SP")          64 [u8;16] born_host ip (IPv6, v4-mapped)
//! 10 u8  version (1)                  80 u16 born_host_port
//! 11 u8  stamp_flags (broker's)       82 u16 message_flags (delay, transaction state)
//! 12 u32 queue_id                     84 u32 reconsume_count
//! 16 u64 queue_offset                 88 u8  topic_len   89 u8 tag_len
//! 24 u64 log_position                 90 u16 keys_len    92 u32 properties_len
//! 32 i64 store_timestamp_ms           96 u32 body_len
//! 40 u32 body_crc (crc of 48..end)   100 topic, tag, keys, properties, body
//! 44 u32 reserved (0)
//! ```
//!
//! Properties are `u16 key_len, key, u16 value_len, value` repeated. Keys are one string,
//! several keys separated by a space (RocketMQ's convention).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Magic at byte 8 of every record.
pub const MAGIC: u16 = 0x5053;
/// The record format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Size of the broker-stamped header.
pub const HEADER_BYTES: usize = 48;
/// Size of the header plus the producer part's fixed fields.
pub const FIXED_BYTES: usize = 100;
/// Upper bound a record's length field may ever carry, whatever the configuration.
pub const ABSOLUTE_MAX_RECORD_BYTES: usize = 64 << 20;
/// Longest topic name.
pub const MAX_TOPIC_BYTES: usize = 127;

/// Stamp flag (byte 11, set only by the broker): the record is a *topic tombstone*, not a
/// message. It carries no body and belongs to no queue; it says that the topic named in it
/// was deleted on this shard at this log position, so recovery forgets the topic's queues
/// where it meets one and never indexes the topic's older records again. Producers cannot
/// set it: stamping a producer's record writes the stamp flags as 0.
pub const STAMP_FLAG_TOPIC_DELETED: u8 = 1 << 0;

/// Message flag: the message is delayed until `deliver_at_ms`.
pub const FLAG_DELAY: u16 = 1 << 0;
/// Message flag: half message of a transaction, not yet visible.
pub const FLAG_TRANSACTION_PREPARED: u16 = 1 << 1;
/// Message flag: a transaction commit.
pub const FLAG_TRANSACTION_COMMIT: u16 = 1 << 2;
/// Message flag: a transaction rollback.
pub const FLAG_TRANSACTION_ROLLBACK: u16 = 1 << 3;

const OFFSET_TOTAL_LENGTH: usize = 0;
const OFFSET_HEADER_CRC: usize = 4;
const OFFSET_MAGIC: usize = 8;
const OFFSET_VERSION: usize = 10;
const OFFSET_STAMP_FLAGS: usize = 11;
const OFFSET_QUEUE_ID: usize = 12;
const OFFSET_QUEUE_OFFSET: usize = 16;
const OFFSET_LOG_POSITION: usize = 24;
const OFFSET_STORE_TIMESTAMP: usize = 32;
const OFFSET_BODY_CRC: usize = 40;
const OFFSET_BORN_TIMESTAMP: usize = 48;
const OFFSET_DELIVER_AT: usize = 56;
const OFFSET_BORN_IP: usize = 64;
const OFFSET_BORN_PORT: usize = 80;
const OFFSET_MESSAGE_FLAGS: usize = 82;
const OFFSET_RECONSUME_COUNT: usize = 84;
const OFFSET_TOPIC_LEN: usize = 88;
const OFFSET_TAG_LEN: usize = 89;
const OFFSET_KEYS_LEN: usize = 90;
const OFFSET_PROPERTIES_LEN: usize = 92;
const OFFSET_BODY_LEN: usize = 96;

const _: () = assert!(OFFSET_BODY_CRC + 8 == HEADER_BYTES);
const _: () = assert!(OFFSET_BODY_LEN + 4 == FIXED_BYTES);

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the record claims, or than a header.
    #[error("record truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// bytes the record needs
        needed: usize,
        /// bytes available
        available: usize,
    },
    /// Magic or version is not ours.
    #[error("bad magic {magic:#06x} or version {version}")]
    BadMagic {
        /// magic found
        magic: u16,
        /// version found
        version: u8,
    },
    /// The length field disagrees with the field lengths, or is out of bounds.
    #[error("record length {total_length} is inconsistent (fields add up to {fields})")]
    BadLength {
        /// length field
        total_length: usize,
        /// sum of the fixed part and the variable fields
        fields: usize,
    },
    /// The record is larger than the configured limit.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// record size
        size: usize,
        /// configured limit
        limit: usize,
    },
    /// The header CRC does not match.
    #[error("header crc mismatch")]
    HeaderCrc,
    /// The body CRC does not match.
    #[error("body crc mismatch")]
    BodyCrc,
    /// A field is longer than its length field can say, or malformed.
    #[error("field {field} is invalid: {reason}")]
    BadField {
        /// field name
        field: &'static str,
        /// what is wrong
        reason: &'static str,
    },
}

/// Reads a little-endian u16 at `at`. Callers have checked bounds.
fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    bytes[at..at + value.len()].copy_from_slice(value);
}

/// Hash of a tag as stored in the queue index (0 for "no tag").
pub fn tag_hash(tag: &[u8]) -> u32 {
    if tag.is_empty() {
        0
    } else {
        crc32fast::hash(tag).max(1)
    }
}

/// Builds one producer-side record (stamped fields zero) and appends it to a batch buffer.
#[derive(Clone, Debug)]
pub struct RecordBuilder<'a> {
    topic: &'a str,
    tag: &'a str,
    keys: &'a str,
    properties: &'a [(&'a str, &'a str)],
    body: &'a [u8],
    born_timestamp_ms: i64,
    deliver_at_ms: i64,
    born_host: Option<SocketAddr>,
    message_flags: u16,
    reconsume_count: u32,
}

impl<'a> RecordBuilder<'a> {
    /// A record carrying `body`, with every other field empty.
    pub fn new(body: &'a [u8]) -> Self {
        RecordBuilder {
            topic: "",
            tag: "",
            keys: "",
            properties: &[],
            body,
            born_timestamp_ms: 0,
            deliver_at_ms: 0,
            born_host: None,
            message_flags: 0,
            reconsume_count: 0,
        }
    }
    /// Sets the topic (must match the topic the batch is appended to).
    pub fn topic(mut self, topic: &'a str) -> Self {
        self.topic = topic;
        self
    }
    /// Sets the tag.
    pub fn tag(mut self, tag: &'a str) -> Self {
        self.tag = tag;
        self
    }
    /// Sets the keys (space-separated).
    pub fn keys(mut self, keys: &'a str) -> Self {
        self.keys = keys;
        self
    }
    /// Sets the user properties.
    pub fn properties(mut self, properties: &'a [(&'a str, &'a str)]) -> Self {
        self.properties = properties;
        self
    }
    /// Sets the producer's timestamp.
    pub fn born_timestamp_ms(mut self, born_timestamp_ms: i64) -> Self {
        self.born_timestamp_ms = born_timestamp_ms;
        self
    }
    /// Sets the producer's address.
    pub fn born_host(mut self, born_host: SocketAddr) -> Self {
        self.born_host = Some(born_host);
        self
    }
    /// Delays delivery until `deliver_at_ms` (sets [`FLAG_DELAY`]).
    pub fn deliver_at_ms(mut self, deliver_at_ms: i64) -> Self {
        self.deliver_at_ms = deliver_at_ms;
        self.message_flags |= FLAG_DELAY;
        self
    }
    /// Sets the message flags (`FLAG_*`).
    pub fn message_flags(mut self, message_flags: u16) -> Self {
        self.message_flags = message_flags;
        self
    }
    /// Sets how many times the message was consumed again.
    pub fn reconsume_count(mut self, reconsume_count: u32) -> Self {
        self.reconsume_count = reconsume_count;
        self
    }

    fn properties_len(&self) -> usize {
        self.properties
            .iter()
            .map(|(key, value)| 4 + key.len() + value.len())
            .sum()
    }

    /// Length of the encoded record.
    pub fn encoded_len(&self) -> usize {
        FIXED_BYTES
            + self.topic.len()
            + self.tag.len()
            + self.keys.len()
            + self.properties_len()
            + self.body.len()
    }

    /// Appends the encoded record to `out`; returns its length.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<usize, RecordError> {
        let too_long = |field, reason| Err(RecordError::BadField { field, reason });
        if self.topic.len() > MAX_TOPIC_BYTES {
            return too_long("topic", "longer than 127 bytes");
        }
        if self.tag.len() > u8::MAX as usize {
            return too_long("tag", "longer than 255 bytes");
        }
        if self.keys.len() > u16::MAX as usize {
            return too_long("keys", "longer than 65535 bytes");
        }
        if self
            .properties
            .iter()
            .any(|(key, value)| key.len() > u16::MAX as usize || value.len() > u16::MAX as usize)
        {
            return too_long("properties", "a key or value is longer than 65535 bytes");
        }
        let total_length = self.encoded_len();
        if total_length > ABSOLUTE_MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size: total_length,
                limit: ABSOLUTE_MAX_RECORD_BYTES,
            });
        }
        let start = out.len();
        out.resize(start + FIXED_BYTES, 0);
        {
            let fixed = &mut out[start..];
            put(
                fixed,
                OFFSET_TOTAL_LENGTH,
                &(total_length as u32).to_le_bytes(),
            );
            put(fixed, OFFSET_MAGIC, &MAGIC.to_le_bytes());
            fixed[OFFSET_VERSION] = VERSION;
            put(
                fixed,
                OFFSET_BORN_TIMESTAMP,
                &self.born_timestamp_ms.to_le_bytes(),
            );
            put(fixed, OFFSET_DELIVER_AT, &self.deliver_at_ms.to_le_bytes());
            if let Some(born_host) = self.born_host {
                let ip = match born_host.ip() {
                    IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                    IpAddr::V6(v6) => v6,
                };
                put(fixed, OFFSET_BORN_IP, &ip.octets());
                put(fixed, OFFSET_BORN_PORT, &born_host.port().to_le_bytes());
            }
            put(
                fixed,
                OFFSET_MESSAGE_FLAGS,
                &self.message_flags.to_le_bytes(),
            );
            put(
                fixed,
                OFFSET_RECONSUME_COUNT,
                &self.reconsume_count.to_le_bytes(),
            );
            fixed[OFFSET_TOPIC_LEN] = self.topic.len() as u8;
            fixed[OFFSET_TAG_LEN] = self.tag.len() as u8;
            put(
                fixed,
                OFFSET_KEYS_LEN,
                &(self.keys.len() as u16).to_le_bytes(),
            );
            put(
                fixed,
                OFFSET_PROPERTIES_LEN,
                &(self.properties_len() as u32).to_le_bytes(),
            );
            put(
                fixed,
                OFFSET_BODY_LEN,
                &(self.body.len() as u32).to_le_bytes(),
            );
        }
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(self.tag.as_bytes());
        out.extend_from_slice(self.keys.as_bytes());
        for (key, value) in self.properties {
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(self.body);
        let body_crc = crc32fast::hash(&out[start + HEADER_BYTES..]);
        put(&mut out[start..], OFFSET_BODY_CRC, &body_crc.to_le_bytes());
        Ok(total_length)
    }
}

/// The broker-assigned fields written by [`stamp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// queue the record is stored in
    pub queue_id: u32,
    /// its offset in that queue
    pub queue_offset: u64,
    /// its position in the shard's commit log
    pub log_position: u64,
    /// the shard's clock when it was appended
    pub store_timestamp_ms: i64,
}

/// Writes the broker-assigned fields into an encoded record (stamp flags 0: a message) and
/// seals them with the header CRC. The producer part (and its `body_crc`) is left untouched.
pub fn stamp(record: &mut [u8], stamp: Stamp) {
    stamp_with_flags(record, stamp, 0);
}

/// [`stamp`] with these stamp flags (`STAMP_FLAG_*`).
pub(crate) fn stamp_with_flags(record: &mut [u8], stamp: Stamp, stamp_flags: u8) {
    assert!(
        record.len() >= HEADER_BYTES,
        "stamp on a record shorter than its header"
    );
    record[OFFSET_STAMP_FLAGS] = stamp_flags;
    put(record, OFFSET_QUEUE_ID, &stamp.queue_id.to_le_bytes());
    put(
        record,
        OFFSET_QUEUE_OFFSET,
        &stamp.queue_offset.to_le_bytes(),
    );
    put(
        record,
        OFFSET_LOG_POSITION,
        &stamp.log_position.to_le_bytes(),
    );
    put(
        record,
        OFFSET_STORE_TIMESTAMP,
        &stamp.store_timestamp_ms.to_le_bytes(),
    );
    let header_crc = crc32fast::hash(&record[OFFSET_MAGIC..HEADER_BYTES]);
    put(record, OFFSET_HEADER_CRC, &header_crc.to_le_bytes());
}

/// Reads the length field of the record starting at `bytes[0]`, if 4 bytes are there.
pub fn peek_total_length(bytes: &[u8]) -> Option<usize> {
    (bytes.len() >= 4).then(|| u32_at(bytes, OFFSET_TOTAL_LENGTH) as usize)
}

/// The log position stamped in the record header at the start of `bytes` (check the header
/// with [`RecordView::header_is_valid`] first).
pub fn stamped_log_position(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= HEADER_BYTES).then(|| u64_at(bytes, OFFSET_LOG_POSITION))
}

/// Checks the structure of the record at the start of `bytes` (lengths, magic, version) and
/// returns its total length. Verifies neither CRC.
fn check_structure(bytes: &[u8], max_record_bytes: usize) -> Result<usize, RecordError> {
    if bytes.len() < FIXED_BYTES {
        return Err(RecordError::Truncated {
            needed: FIXED_BYTES,
            available: bytes.len(),
        });
    }
    let magic = u16_at(bytes, OFFSET_MAGIC);
    let version = bytes[OFFSET_VERSION];
    if magic != MAGIC || version != VERSION {
        return Err(RecordError::BadMagic { magic, version });
    }
    let total_length = u32_at(bytes, OFFSET_TOTAL_LENGTH) as usize;
    if total_length > max_record_bytes {
        return Err(RecordError::TooLarge {
            size: total_length,
            limit: max_record_bytes,
        });
    }
    let fields = FIXED_BYTES
        + bytes[OFFSET_TOPIC_LEN] as usize
        + bytes[OFFSET_TAG_LEN] as usize
        + u16_at(bytes, OFFSET_KEYS_LEN) as usize
        + u32_at(bytes, OFFSET_PROPERTIES_LEN) as usize
        + u32_at(bytes, OFFSET_BODY_LEN) as usize;
    if fields != total_length {
        return Err(RecordError::BadLength {
            total_length,
            fields,
        });
    }
    if bytes.len() < total_length {
        return Err(RecordError::Truncated {
            needed: total_length,
            available: bytes.len(),
        });
    }
    Ok(total_length)
}

fn check_body_crc(record: &[u8]) -> Result<(), RecordError> {
    if crc32fast::hash(&record[HEADER_BYTES..]) != u32_at(record, OFFSET_BODY_CRC) {
        return Err(RecordError::BodyCrc);
    }
    Ok(())
}

fn check_properties(record: &RecordView<'_>) -> Result<(), RecordError> {
    let mut rest = record.properties_bytes();
    while !rest.is_empty() {
        for _ in 0..2 {
            if rest.len() < 2 {
                return Err(RecordError::BadField {
                    field: "properties",
                    reason: "truncated length",
                });
            }
            let len = u16_at(rest, 0) as usize;
            if rest.len() < 2 + len {
                return Err(RecordError::BadField {
                    field: "properties",
                    reason: "truncated key or value",
                });
            }
            rest = &rest[2 + len..];
        }
    }
    Ok(())
}

/// Validates a producer's record at the start of `bytes` before the broker stamps it:
/// structure, limit, body CRC and properties. Returns the record's length.
pub fn validate_unstamped(bytes: &[u8], max_record_bytes: usize) -> Result<usize, RecordError> {
    let total_length = check_structure(bytes, max_record_bytes)?;
    let record = &bytes[..total_length];
    check_body_crc(record)?;
    check_properties(&RecordView { bytes: record })?;
    Ok(total_length)
}

/// A stored, stamped record, borrowed from a buffer and fully verified.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    bytes: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Parses and verifies (structure, both CRCs) the record at the start of `bytes`.
    pub fn parse(bytes: &'a [u8], max_record_bytes: usize) -> Result<Self, RecordError> {
        let total_length = check_structure(bytes, max_record_bytes)?;
        let record = &bytes[..total_length];
        Self::check_header_crc(record)?;
        check_body_crc(record)?;
        Ok(RecordView { bytes: record })
    }

    /// A view of a record whose structure [`validate_unstamped`] (or [`Self::parse`]) has
    /// already checked: lengths are trusted, CRCs are not checked again. For the append
    /// path, which reads the topic and tag of records it has just validated.
    pub(crate) fn of_validated(record: &'a [u8]) -> Self {
        RecordView { bytes: record }
    }

    /// Cheap check used when hunting for record boundaries: structure and header CRC only.
    pub fn header_is_valid(bytes: &[u8], max_record_bytes: usize) -> bool {
        if bytes.len() < HEADER_BYTES || u16_at(bytes, OFFSET_MAGIC) != MAGIC {
            return false;
        }
        let total_length = u32_at(bytes, OFFSET_TOTAL_LENGTH) as usize;
        (FIXED_BYTES..=max_record_bytes).contains(&total_length)
            && Self::check_header_crc(bytes).is_ok()
    }

    fn check_header_crc(record: &[u8]) -> Result<(), RecordError> {
        if crc32fast::hash(&record[OFFSET_MAGIC..HEADER_BYTES]) != u32_at(record, OFFSET_HEADER_CRC)
        {
            return Err(RecordError::HeaderCrc);
        }
        Ok(())
    }

    /// The whole record.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Length of the whole record.
    pub fn total_length(&self) -> usize {
        self.bytes.len()
    }
    /// Queue id stamped by the broker.
    pub fn queue_id(&self) -> u32 {
        u32_at(self.bytes, OFFSET_QUEUE_ID)
    }
    /// Queue offset stamped by the broker.
    pub fn queue_offset(&self) -> u64 {
        u64_at(self.bytes, OFFSET_QUEUE_OFFSET)
    }
    /// Log position stamped by the broker.
    pub fn log_position(&self) -> u64 {
        u64_at(self.bytes, OFFSET_LOG_POSITION)
    }
    /// Store timestamp stamped by the broker.
    pub fn store_timestamp_ms(&self) -> i64 {
        u64_at(self.bytes, OFFSET_STORE_TIMESTAMP) as i64
    }
    /// Producer timestamp.
    pub fn born_timestamp_ms(&self) -> i64 {
        u64_at(self.bytes, OFFSET_BORN_TIMESTAMP) as i64
    }
    /// Requested delivery time (0 = now).
    pub fn deliver_at_ms(&self) -> i64 {
        u64_at(self.bytes, OFFSET_DELIVER_AT) as i64
    }
    /// Producer address.
    pub fn born_host(&self) -> SocketAddr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.bytes[OFFSET_BORN_IP..OFFSET_BORN_IP + 16]);
        let ip = Ipv6Addr::from(octets);
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        SocketAddr::new(ip, u16_at(self.bytes, OFFSET_BORN_PORT))
    }
    /// Stamp flags (`STAMP_FLAG_*`), set by the broker.
    pub fn stamp_flags(&self) -> u8 {
        self.bytes[OFFSET_STAMP_FLAGS]
    }

    /// Whether this is a topic tombstone ([`STAMP_FLAG_TOPIC_DELETED`]), not a message.
    pub fn is_topic_tombstone(&self) -> bool {
        self.stamp_flags() & STAMP_FLAG_TOPIC_DELETED != 0
    }

    /// Message flags (`FLAG_*`).
    pub fn message_flags(&self) -> u16 {
        u16_at(self.bytes, OFFSET_MESSAGE_FLAGS)
    }
    /// Reconsume count.
    pub fn reconsume_count(&self) -> u32 {
        u32_at(self.bytes, OFFSET_RECONSUME_COUNT)
    }

    fn field(&self, skip: usize, len: usize) -> &'a [u8] {
        &self.bytes[FIXED_BYTES + skip..FIXED_BYTES + skip + len]
    }
    fn topic_len(&self) -> usize {
        self.bytes[OFFSET_TOPIC_LEN] as usize
    }
    fn tag_len(&self) -> usize {
        self.bytes[OFFSET_TAG_LEN] as usize
    }
    fn keys_len(&self) -> usize {
        u16_at(self.bytes, OFFSET_KEYS_LEN) as usize
    }
    fn properties_len(&self) -> usize {
        u32_at(self.bytes, OFFSET_PROPERTIES_LEN) as usize
    }
    /// Topic bytes (UTF-8 when produced by [`RecordBuilder`]).
    pub fn topic(&self) -> &'a [u8] {
        self.field(0, self.topic_len())
    }
    /// Tag bytes (empty = no tag).
    pub fn tag(&self) -> &'a [u8] {
        self.field(self.topic_len(), self.tag_len())
    }
    /// Keys, space-separated.
    pub fn keys(&self) -> &'a [u8] {
        self.field(self.topic_len() + self.tag_len(), self.keys_len())
    }
    fn properties_bytes(&self) -> &'a [u8] {
        self.field(
            self.topic_len() + self.tag_len() + self.keys_len(),
            self.properties_len(),
        )
    }
    /// User properties as (key, value) pairs.
    pub fn properties(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        let mut rest = self.properties_bytes();
        std::iter::from_fn(move || {
            if rest.len() < 2 {
                return None;
            }
            let key_len = u16_at(rest, 0) as usize;
            let key = rest.get(2..2 + key_len)?;
            let after_key = rest.get(2 + key_len..)?;
            let value_len = u16_at(after_key, 0) as usize;
            let value = after_key.get(2..2 + value_len)?;
            rest = &after_key[2 + value_len..];
            Some((key, value))
        })
    }
    /// The message body.
    pub fn body(&self) -> &'a [u8] {
        let start = FIXED_BYTES
            + self.topic_len()
            + self.tag_len()
            + self.keys_len()
            + self.properties_len();
        &self.bytes[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(out: &mut Vec<u8>) -> usize {
        RecordBuilder::new(b"hello body")
            .topic("orders")
            .tag("paid")
            .keys("k1 k2")
            .properties(&[("a", "1"), ("trace", "xyz")])
            .born_timestamp_ms(1234)
            .born_host("10.1.2.3:4567".parse().unwrap())
            .reconsume_count(2)
            .encode(out)
            .unwrap()
    }

    #[test]
    fn encode_stamp_parse_round_trip() {
        let mut batch = Vec::new();
        let len = sample(&mut batch);
        assert_eq!(validate_unstamped(&batch, 1 << 20), Ok(len));
        stamp(
            &mut batch,
            Stamp {
                queue_id: 3,
                queue_offset: 42,
                log_position: 8192,
                store_timestamp_ms: 99,
            },
        );
        let view = RecordView::parse(&batch, 1 << 20).unwrap();
        assert_eq!(view.total_length(), len);
        assert_eq!(view.queue_id(), 3);
        assert_eq!(view.queue_offset(), 42);
        assert_eq!(view.log_position(), 8192);
        assert_eq!(view.store_timestamp_ms(), 99);
        assert_eq!(view.born_timestamp_ms(), 1234);
        assert_eq!(view.born_host(), "10.1.2.3:4567".parse().unwrap());
        assert_eq!(view.reconsume_count(), 2);
        assert_eq!(view.topic(), b"orders");
        assert_eq!(view.tag(), b"paid");
        assert_eq!(view.keys(), b"k1 k2");
        let properties: Vec<_> = view.properties().collect();
        assert_eq!(
            properties,
            vec![(&b"a"[..], &b"1"[..]), (&b"trace"[..], &b"xyz"[..])]
        );
        assert_eq!(view.body(), b"hello body");
    }

    #[test]
    fn a_producer_cannot_make_a_tombstone_and_the_broker_can() {
        let stamp_fields = Stamp {
            queue_id: 0,
            queue_offset: 0,
            log_position: 4096,
            store_timestamp_ms: 7,
        };
        let mut batch = Vec::new();
        sample(&mut batch);
        // A producer sets the broker's flag byte: stamping clears it.
        batch[OFFSET_STAMP_FLAGS] = STAMP_FLAG_TOPIC_DELETED;
        assert!(validate_unstamped(&batch, 1 << 20).is_ok());
        stamp(&mut batch, stamp_fields);
        let view = RecordView::parse(&batch, 1 << 20).unwrap();
        assert_eq!(view.stamp_flags(), 0);
        assert!(!view.is_topic_tombstone());

        let mut tombstone = Vec::new();
        RecordBuilder::new(&[])
            .topic("orders")
            .encode(&mut tombstone)
            .unwrap();
        stamp_with_flags(&mut tombstone, stamp_fields, STAMP_FLAG_TOPIC_DELETED);
        let view = RecordView::parse(&tombstone, 1 << 20).unwrap();
        assert!(view.is_topic_tombstone());
        assert_eq!(view.topic(), b"orders");
    }

    #[test]
    fn unstamped_record_fails_header_crc() {
        let mut batch = Vec::new();
        sample(&mut batch);
        assert_eq!(
            RecordView::parse(&batch, 1 << 20).unwrap_err(),
            RecordError::HeaderCrc
        );
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut batch = Vec::new();
        sample(&mut batch);
        stamp(
            &mut batch,
            Stamp {
                queue_id: 1,
                queue_offset: 2,
                log_position: 3,
                store_timestamp_ms: 4,
            },
        );
        for bit in 0..batch.len() * 8 {
            let mut copy = batch.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(
                RecordView::parse(&copy, 1 << 20).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let mut batch = Vec::new();
        let len = sample(&mut batch);
        assert!(matches!(
            validate_unstamped(&batch, len - 1),
            Err(RecordError::TooLarge { .. })
        ));
        assert!(matches!(
            validate_unstamped(&batch[..len - 1], 1 << 20),
            Err(RecordError::Truncated { .. })
        ));
        let long_topic = "t".repeat(200);
        assert!(RecordBuilder::new(b"")
            .topic(&long_topic)
            .encode(&mut Vec::new())
            .is_err());
    }
}
