//! The messages a client sends and receives, and the queues it names: [`Message`] (what a
//! producer sends), [`SendResult`] (where it landed), [`MessageQueue`] (one queue of one
//! broker group) and [`ReceivedMessage`] (a stored message as a pull returns it).
//!
//! A message is encoded exactly once, by [`Message::encode_into`], straight into the batch
//! buffer of the queue it goes to, in the storage record format
//! (`spillway_storage::record::RecordBuilder`); the broker stores those bytes as they are.
//! The encoding (and its CRC) runs on the sending thread, so that work spreads over the
//! callers. A received message's body is a slice of the pull response's buffer, not a
//! copy; every record is verified (structure and both CRCs) before it is handed out.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use spillway_storage::record::{self, RecordBuilder, RecordView};

use crate::error::{ClientError, Result};

/// Properties a message keeps on the stack while encoding; more take one allocation.
const INLINE_PROPERTIES: usize = 8;

/// A message to send: topic, optional tag, keys, properties and body.
///
/// The topic and tag are `Arc<str>` so that a sender of many messages clones a pointer,
/// not a string: keep an `Arc<str>` of the topic and pass clones of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    topic: Arc<str>,
    tag: Option<Arc<str>>,
    /// Space-separated (RocketMQ's convention), as stored.
    keys: String,
    properties: Vec<(String, String)>,
    body: Bytes,
}

impl Message {
    /// A message to `topic` with `body`, no tag, keys or properties.
    pub fn new(topic: impl Into<Arc<str>>, body: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            tag: None,
            keys: String::new(),
            properties: Vec::new(),
            body: body.into(),
        }
    }

    /// Sets the tag (the second-level type consumers filter on).
    pub fn with_tag(mut self, tag: impl Into<Arc<str>>) -> Message {
        self.tag = Some(tag.into());
        self
    }

    /// Adds a key (for lookup; keys are stored space-separated, so a key should not
    /// contain a space).
    pub fn with_key(mut self, key: &str) -> Message {
        if !self.keys.is_empty() {
            self.keys.push(' ');
        }
        self.keys.push_str(key);
        self
    }

    /// Adds a user property.
    pub fn with_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic, shared.
    pub fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The tag, if set.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.split(' ').filter(|key| !key.is_empty())
    }

    /// The user properties.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Runs `with` on a record builder for this message born at `born_timestamp_ms`.
    fn with_builder<R>(
        &self,
        born_timestamp_ms: i64,
        with: impl FnOnce(RecordBuilder<'_>) -> R,
    ) -> R {
        let builder = RecordBuilder::new(&self.body)
            .topic(&self.topic)
            .tag(self.tag.as_deref().unwrap_or(""))
            .keys(&self.keys)
            .born_timestamp_ms(born_timestamp_ms);
        if self.properties.is_empty() {
            return with(builder);
        }
        if self.properties.len() <= INLINE_PROPERTIES {
            let mut inline = [("", ""); INLINE_PROPERTIES];
            for (slot, (key, value)) in inline.iter_mut().zip(&self.properties) {
                *slot = (key.as_str(), value.as_str());
            }
            return with(builder.properties(&inline[..self.properties.len()]));
        }
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        with(builder.properties(&properties))
    }

    /// Size of the encoded record.
    pub fn encoded_len(&self) -> usize {
        self.with_builder(0, |builder| builder.encoded_len())
    }

    /// Appends the encoded record (born now) to `batch`; returns its length. Fails, leaving
    /// `batch` as it was, if a field is too long for the record format.
    pub fn encode_into(&self, batch: &mut Vec<u8>) -> Result<usize> {
        let born_timestamp_ms = now_ms();
        self.with_builder(born_timestamp_ms, |builder| builder.encode(batch))
            .map_err(|error| ClientError::InvalidMessage {
                reason: error.to_string(),
            })
    }
}

/// Where a sent message was stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SendResult {
    /// The broker group that stored it.
    pub broker_name: Arc<str>,
    /// The queue, in that group.
    pub queue_id: u32,
    /// Its offset in the queue.
    pub offset: u64,
}

/// One queue of a topic on one broker group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageQueue {
    /// The topic.
    pub topic: String,
    /// The broker group holding the queue.
    pub broker_name: String,
    /// The queue id in that group: `0..queue_count`.
    pub queue_id: u32,
}

impl MessageQueue {
    /// The queue `queue_id` of `topic` on `broker_name`.
    pub fn new(topic: impl Into<String>, broker_name: impl Into<String>, queue_id: u32) -> Self {
        MessageQueue {
            topic: topic.into(),
            broker_name: broker_name.into(),
            queue_id,
        }
    }
}

impl fmt::Display for MessageQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.broker_name, self.queue_id)
    }
}

/// A stored message, as a pull returned it (verified: structure and both CRCs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The topic.
    pub topic: Arc<str>,
    /// The broker group holding its queue.
    pub broker_name: Arc<str>,
    /// The queue it was stored in (in that broker group).
    pub queue_id: u32,
    /// Its offset in the queue.
    pub offset: u64,
    /// The tag, if it had one.
    pub tag: Option<String>,
    /// Its keys.
    pub keys: Vec<String>,
    /// Its user properties.
    pub properties: Vec<(String, String)>,
    /// The body: a slice of the response buffer, not a copy.
    pub body: Bytes,
    /// When the producer made it (ms since the Unix epoch).
    pub born_timestamp_ms: i64,
    /// When the broker stored it (ms since the Unix epoch).
    pub store_timestamp_ms: i64,
}

impl ReceivedMessage {
    /// The queue it was stored in.
    pub fn queue(&self) -> MessageQueue {
        MessageQueue::new(&*self.topic, &*self.broker_name, self.queue_id)
    }
}

/// Parses the stored records of a pull response's `payload` from a queue of
/// `broker_name`, verifying each and checking it belongs to `topic`/`queue_id`.
pub(crate) fn parse_records(
    payload: &Bytes,
    topic: &Arc<str>,
    broker_name: &Arc<str>,
    queue_id: u32,
    address: &str,
) -> Result<Vec<ReceivedMessage>> {
    let mut messages = Vec::new();
    let mut position = 0;
    while position < payload.len() {
        let view = RecordView::parse(&payload[position..], record::ABSOLUTE_MAX_RECORD_BYTES)
            .map_err(|error| {
                ClientError::bad_response(
                    address,
                    format!(
                        "record {} at byte {position} of a pull of {topic}/{queue_id}: {error}",
                        messages.len()
                    ),
                )
            })?;
        if view.topic() != topic.as_bytes() || view.queue_id() != queue_id {
            return Err(ClientError::bad_response(
                address,
                format!(
                    "a record of {}/{} in a pull of {topic}/{queue_id}",
                    String::from_utf8_lossy(view.topic()),
                    view.queue_id()
                ),
            ));
        }
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        messages.push(ReceivedMessage {
            topic: topic.clone(),
            broker_name: broker_name.clone(),
            queue_id,
            offset: view.queue_offset(),
            tag: (!view.tag().is_empty()).then(|| text(view.tag())),
            keys: view
                .keys()
                .split(|&byte| byte == b' ')
                .filter(|key| !key.is_empty())
                .map(text)
                .collect(),
            properties: view
                .properties()
                .map(|(key, value)| (text(key), text(value)))
                .collect(),
            body: payload.slice_ref(view.body()),
            born_timestamp_ms: view.born_timestamp_ms(),
            store_timestamp_ms: view.store_timestamp_ms(),
        });
        position += view.total_length();
    }
    Ok(messages)
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_storage::record::{stamp, Stamp};

    #[test]
    fn encoded_message_parses_back_with_every_field_and_a_shared_body() {
        let message = Message::new("orders", Bytes::from_static(b"body bytes"))
            .with_tag("paid")
            .with_key("k1")
            .with_key("k2")
            .with_property("trace", "abc")
            .with_property("region", "eu");
        let mut batch = Vec::new();
        let length = message.encode_into(&mut batch).unwrap();
        assert_eq!(length, message.encoded_len());
        assert_eq!(batch.len(), length);
        stamp(
            &mut batch,
            Stamp {
                queue_id: 3,
                queue_offset: 41,
                log_position: 0,
                store_timestamp_ms: 7,
            },
        );
        let payload = Bytes::from(batch);
        let topic: Arc<str> = Arc::from("orders");
        let broker: Arc<str> = Arc::from("broker-a");
        let parsed = parse_records(&payload, &topic, &broker, 3, "test").unwrap();
        assert_eq!(parsed.len(), 1);
        let received = &parsed[0];
        assert_eq!(received.offset, 41);
        assert_eq!(received.tag.as_deref(), Some("paid"));
        assert_eq!(received.keys, ["k1", "k2"]);
        assert_eq!(
            received.properties,
            [
                ("trace".to_owned(), "abc".to_owned()),
                ("region".to_owned(), "eu".to_owned())
            ]
        );
        assert_eq!(received.body, "body bytes");
        assert_eq!(received.store_timestamp_ms, 7);
        // The body points into the payload.
        let start = payload.as_ptr() as usize;
        let body = received.body.as_ptr() as usize;
        assert!(body >= start && body < start + payload.len());
        // Another queue's record is refused.
        assert_eq!(received.queue(), MessageQueue::new("orders", "broker-a", 3));
        assert!(parse_records(&payload, &topic, &broker, 2, "test").is_err());
    }

    #[test]
    fn many_properties_and_a_too_long_topic() {
        let mut message = Message::new("t", Bytes::new());
        for index in 0..20 {
            message = message.with_property(format!("k{index}"), "v");
        }
        let mut batch = Vec::new();
        assert_eq!(
            message.encode_into(&mut batch).unwrap(),
            message.encoded_len()
        );
        let long = Message::new("x".repeat(200), Bytes::new());
        let mut untouched = Vec::new();
        assert!(matches!(
            long.encode_into(&mut untouched),
            Err(ClientError::InvalidMessage { .. })
        ));
        assert!(untouched.is_empty());
    }
}
