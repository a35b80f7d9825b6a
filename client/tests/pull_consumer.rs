//! The pull consumer against a real broker: committed offsets (none, then what was
//! committed, per group), queue offsets, the offset for a time, tag
//! filtering, and a long poll that answers as soon as a message arrives.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{client_config, start_cluster};
use spillway_client::{Message, MessageQueue, Producer, ProducerConfig, PullConsumer, PullStatus};
use spillway_tests::{poll_until, DEADLINE};

const TOPIC: &str = "orders";

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// Sends `count` messages with `key` (one queue) and returns their queue and offsets.
fn send_keyed(producer: &Producer, key: &str, tag: &str, count: usize) -> (MessageQueue, Vec<u64>) {
    let mut queue = None;
    let offsets = (0..count)
        .map(|index| {
            let message = Message::new(TOPIC, format!("{tag} {index}")).with_tag(tag);
            let sent = producer.send_with_key(message, key.as_bytes()).unwrap();
            queue = Some(MessageQueue::new(TOPIC, &*sent.broker_name, sent.queue_id));
            sent.offset
        })
        .collect();
    (queue.unwrap(), offsets)
}

#[test]
fn committed_offset_is_none_until_committed_and_then_what_was_committed() {
    let (name_server, _broker) = start_cluster(TOPIC, 2);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(config.clone())).unwrap();
    let (queue, offsets) = send_keyed(&producer, "k", "a", 10);
    assert_eq!(offsets, (0..10).collect::<Vec<u64>>());

    let consumer = PullConsumer::new(config.clone(), "billing").unwrap();
    assert_eq!(consumer.queues(TOPIC).unwrap().len(), 2);
    assert_eq!(consumer.committed_offset(&queue).unwrap(), None);
    assert_eq!(consumer.queue_offsets(&queue).unwrap(), (0, 10));
    consumer.commit_offset(&queue, 6).unwrap();
    assert_eq!(consumer.committed_offset(&queue).unwrap(), Some(6));
    assert_eq!(
        futures_lite::future::block_on(consumer.committed_offset_async(&queue)).unwrap(),
        Some(6)
    );
    // Another group has its own offsets.
    let other = PullConsumer::with_client(consumer.client(), "audit").unwrap();
    assert_eq!(other.committed_offset(&queue).unwrap(), None);
}

#[test]
fn offset_for_timestamp_finds_the_first_message_stored_at_or_after_it() {
    let (name_server, _broker) = start_cluster(TOPIC, 2);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(config.clone())).unwrap();
    let consumer = PullConsumer::new(config, "history").unwrap();
    let (queue, first) = send_keyed(&producer, "k", "early", 5);
    let early = consumer.pull(&queue, 0, 32, Duration::ZERO, "*").unwrap();
    let last_early = early.messages.last().unwrap().store_timestamp_ms;
    // The broker shares this clock: once it has moved on, later messages are stored later.
    poll_until("the clock to move on", DEADLINE, || {
        (now_ms() > last_early).then_some(())
    });
    let (same_queue, second) = send_keyed(&producer, "k", "late", 5);
    assert_eq!(same_queue, queue);
    assert_eq!(second[0], first[4] + 1);
    let late = consumer
        .pull(&queue, second[0], 32, Duration::ZERO, "*")
        .unwrap();
    let first_late = late.messages[0].store_timestamp_ms;
    assert!(first_late > last_early);

    assert_eq!(consumer.offset_for_timestamp(&queue, 0).unwrap(), 0);
    assert_eq!(
        consumer.offset_for_timestamp(&queue, first_late).unwrap(),
        second[0]
    );
    assert_eq!(
        consumer
            .offset_for_timestamp(&queue, last_early + 1)
            .unwrap(),
        second[0]
    );
    assert_eq!(consumer.offset_for_timestamp(&queue, i64::MAX).unwrap(), 10);
}

#[test]
fn tag_expression_filters_and_next_offset_moves_past_the_rest() {
    let (name_server, _broker) = start_cluster(TOPIC, 1);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(config.clone())).unwrap();
    let mut queue = None;
    for index in 0..9 {
        let tag = ["paid", "refunded", "created"][index % 3];
        let sent = producer
            .send(Message::new(TOPIC, format!("{tag} {index}")).with_tag(tag))
            .unwrap();
        queue = Some(MessageQueue::new(TOPIC, &*sent.broker_name, sent.queue_id));
    }
    let queue = queue.unwrap();
    let consumer = PullConsumer::new(config, "billing").unwrap();
    let pulled = consumer
        .pull(&queue, 0, 32, Duration::ZERO, "paid || refunded")
        .unwrap();
    assert_eq!(pulled.status, PullStatus::Found);
    assert_eq!(pulled.next_offset, 9);
    let tags: Vec<&str> = pulled
        .messages
        .iter()
        .map(|message| message.tag.as_deref().unwrap())
        .collect();
    assert_eq!(
        tags,
        ["paid", "refunded", "paid", "refunded", "paid", "refunded"]
    );
    let too_large = consumer.pull(&queue, 50, 32, Duration::ZERO, "*").unwrap();
    assert_eq!(too_large.status, PullStatus::OffsetTooLarge);
    assert_eq!(too_large.next_offset, 9);
}

#[test]
fn long_poll_answers_when_a_message_arrives() {
    let (name_server, _broker) = start_cluster(TOPIC, 1);
    let config = client_config(&name_server);
    let consumer = PullConsumer::new(config.clone(), "tail").unwrap();
    let queue = consumer.queues(TOPIC).unwrap().remove(0);
    // The pull starts first and waits on the broker (its future runs on another thread).
    let waiting = consumer.pull_async(&queue, 0, 32, Duration::from_secs(15), "*");
    let started = Instant::now();
    let puller = std::thread::spawn(move || futures_lite::future::block_on(waiting));
    let producer = Producer::start(ProducerConfig::new(config)).unwrap();
    producer.send(Message::new(TOPIC, "wake up")).unwrap();
    let pulled = puller.join().unwrap().unwrap();
    assert_eq!(pulled.status, PullStatus::Found);
    assert_eq!(pulled.messages[0].body, "wake up");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the pull waited out its whole wait"
    );
}
