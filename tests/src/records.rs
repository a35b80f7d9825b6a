//! Messages in and out: producer batches encoded with the storage record format, and the
//! stored records of a pull response parsed back into messages.
//!
//! The wire carries messages as record batches that the producer encodes once
//! (`spillway_storage::record::RecordBuilder`) and the broker stores and serves as they are,
//! stamped. Parsing here verifies every record the way a consumer must (structure and both
//! CRCs, `RecordView::parse`), so a test also catches a broker that serves damaged bytes.

use spillway_storage::record::{self, RecordBuilder, RecordView};

/// One message to produce: its tag (empty for none) and body.
pub type OutgoingMessage<'a> = (&'a str, &'a [u8]);

/// A message as a pull returned it: the record's stamped and producer fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedMessage {
    /// Queue offset the broker stamped.
    pub offset: u64,
    /// Queue id the broker stamped.
    pub queue_id: u32,
    /// Topic the producer set.
    pub topic: String,
    /// Tag the producer set.
    pub tag: String,
    /// The body.
    pub body: Vec<u8>,
    /// When the broker stored it (milliseconds since the Unix epoch).
    pub store_timestamp_ms: i64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(since_epoch.as_millis()).expect("milliseconds fit an i64")
}

/// Encodes `messages` as one batch for `topic` (the broker checks that each record's topic
/// is the topic of the part it arrives in), born now.
pub fn encode_batch(topic: &str, messages: &[OutgoingMessage<'_>]) -> Vec<u8> {
    let born_timestamp_ms = now_ms();
    let mut batch = Vec::new();
    for (tag, body) in messages {
        RecordBuilder::new(body)
            .topic(topic)
            .tag(tag)
            .born_timestamp_ms(born_timestamp_ms)
            .encode(&mut batch)
            .unwrap_or_else(|error| panic!("encode a record of {topic}: {error}"));
    }
    batch
}

/// Parses stored records laid back to back (a pull response's payload), verifying each.
pub fn parse_records(payload: &[u8]) -> Result<Vec<ParsedMessage>, String> {
    let mut messages = Vec::new();
    let mut position = 0;
    while position < payload.len() {
        let rest = &payload[position..];
        let length = record::peek_total_length(rest).ok_or_else(|| {
            format!(
                "{} stray bytes at {position} of a {}-byte payload",
                rest.len(),
                payload.len()
            )
        })?;
        let view = RecordView::parse(rest, record::ABSOLUTE_MAX_RECORD_BYTES).map_err(|error| {
            format!(
                "record {} (at byte {position} of {}, length field {length}): {error}",
                messages.len(),
                payload.len()
            )
        })?;
        messages.push(ParsedMessage {
            offset: view.queue_offset(),
            queue_id: view.queue_id(),
            topic: String::from_utf8_lossy(view.topic()).into_owned(),
            tag: String::from_utf8_lossy(view.tag()).into_owned(),
            body: view.body().to_vec(),
            store_timestamp_ms: view.store_timestamp_ms(),
        });
        position += view.total_length();
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_storage::record::{stamp, Stamp};

    #[test]
    fn stamped_batch_parses_back_to_its_messages() {
        let mut batch = encode_batch("orders", &[("a", b"first"), ("", b"second")]);
        let mut position = 0;
        let mut offset = 7;
        while position < batch.len() {
            let length = record::peek_total_length(&batch[position..]).unwrap();
            stamp(
                &mut batch[position..position + length],
                Stamp {
                    queue_id: 3,
                    queue_offset: offset,
                    log_position: position as u64,
                    store_timestamp_ms: 1,
                },
            );
            position += length;
            offset += 1;
        }
        let parsed = parse_records(&batch).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            (parsed[0].offset, parsed[0].queue_id, parsed[0].tag.as_str()),
            (7, 3, "a")
        );
        assert_eq!(parsed[0].topic, "orders");
        assert_eq!(parsed[1].body, b"second");
        assert_eq!(parsed[1].offset, 8);

        batch[position - 1] ^= 1;
        assert!(parse_records(&batch).unwrap_err().contains("record 1"));
        assert!(parse_records(&batch[..10]).is_err());
    }
}
