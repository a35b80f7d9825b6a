//! Send, then pull, through the name server's routes: a message comes back from the queue
//! and offset its acknowledgement named, with every field; async sends from several threads
//! under `futures_lite::future::block_on` each get their own offset; one-way sends land
//! once flushed; a topic nobody holds and an oversized message are refused up front.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, pull_topic, start_cluster};
use spillway_client::{
    ClientError, Message, MessageQueue, Producer, ProducerConfig, PullConsumer, PullStatus,
};

const TOPIC: &str = "orders";
const QUEUES: u32 = 4;

#[test]
fn sent_message_pulls_back_from_the_acknowledged_queue_and_offset() {
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(config.clone())).unwrap();
    let message = Message::new(TOPIC, "order 1 paid")
        .with_tag("paid")
        .with_key("order-1")
        .with_key("customer-7")
        .with_property("region", "eu");
    let sent = producer.send(message).unwrap();
    assert_eq!(&*sent.broker_name, "broker-a");
    assert!(sent.queue_id < QUEUES);

    let consumer = PullConsumer::new(config, "billing").unwrap();
    let queue = MessageQueue::new(TOPIC, &*sent.broker_name, sent.queue_id);
    let pulled = consumer
        .pull(&queue, sent.offset, 32, Duration::ZERO, "*")
        .unwrap();
    assert_eq!(pulled.status, PullStatus::Found);
    assert_eq!(pulled.next_offset, sent.offset + 1);
    assert_eq!(pulled.max_offset, sent.offset + 1);
    let received = &pulled.messages[..];
    assert_eq!(received.len(), 1);
    let received = &received[0];
    assert_eq!(&*received.topic, TOPIC);
    assert_eq!(received.queue_id, sent.queue_id);
    assert_eq!(received.offset, sent.offset);
    assert_eq!(received.body, "order 1 paid");
    assert_eq!(received.tag.as_deref(), Some("paid"));
    assert_eq!(received.keys, ["order-1", "customer-7"]);
    assert_eq!(
        received.properties,
        [("region".to_owned(), "eu".to_owned())]
    );
    assert!(received.born_timestamp_ms <= received.store_timestamp_ms);

    // Nothing after it yet.
    let after = consumer
        .pull(&queue, sent.offset + 1, 32, Duration::ZERO, "*")
        .unwrap();
    assert_eq!(after.status, PullStatus::NoNewMessages);
    producer.close().unwrap();
    assert!(matches!(
        producer.send(Message::new(TOPIC, "late")),
        Err(ClientError::Closed)
    ));
}

/// Where a message was stored: broker group, queue, offset.
type Place = (Arc<str>, u32, u64);

#[test]
fn async_sends_from_several_threads_each_get_their_own_offset() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 500;
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(config.clone())).unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);

    let results: Vec<(String, Place)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let producer = producer.clone();
                let topic = topic.clone();
                scope.spawn(move || {
                    // Start every send first, then wait: the futures run without a runtime.
                    let futures: Vec<_> = (0..PER_THREAD)
                        .map(|index| {
                            let body = format!("thread {thread} message {index}");
                            (
                                body.clone(),
                                producer.send_async(Message::new(topic.clone(), body)),
                            )
                        })
                        .collect();
                    futures
                        .into_iter()
                        .map(|(body, future)| {
                            let sent = futures_lite::future::block_on(future)
                                .unwrap_or_else(|error| panic!("{body}: {error}"));
                            (body, (sent.broker_name, sent.queue_id, sent.offset))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|thread| thread.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), THREADS * PER_THREAD);
    let places: HashSet<_> = results.iter().map(|(_, place)| place.clone()).collect();
    assert_eq!(
        places.len(),
        results.len(),
        "two messages acknowledged at one offset"
    );
    // Round-robin used every queue.
    let queues: HashSet<u32> = places.iter().map(|(_, queue, _)| *queue).collect();
    assert_eq!(queues.len(), QUEUES as usize);

    let consumer = PullConsumer::new(config, "check").unwrap();
    let stored = pull_topic(&consumer, TOPIC);
    assert_eq!(stored.len(), results.len());
    for (body, (_, queue, offset)) in &results {
        let message = stored
            .iter()
            .find(|message| message.queue_id == *queue && message.offset == *offset)
            .unwrap_or_else(|| panic!("{body} not at {queue}/{offset}"));
        assert_eq!(message.body, body.as_bytes());
    }
    let stats = producer.stats();
    assert_eq!(stats.messages_acknowledged, results.len() as u64);
    assert_eq!(stats.messages_failed, 0);
    assert_eq!(stats.pending_bytes, 0);
}

#[test]
fn one_way_sends_land_once_flushed() {
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    // A long linger: only the flush sends the last batches.
    let producer = Producer::start(ProducerConfig {
        linger: Duration::from_secs(60),
        ..ProducerConfig::new(config.clone())
    })
    .unwrap();
    for index in 0..300 {
        producer
            .send_oneway(Message::new(TOPIC, format!("one-way {index}")))
            .unwrap();
    }
    producer.flush().unwrap();
    assert_eq!(producer.stats().messages_acknowledged, 300);
    let consumer = PullConsumer::new(config, "check").unwrap();
    assert_eq!(pull_topic(&consumer, TOPIC).len(), 300);
}

#[test]
fn unknown_topic_and_oversized_message_are_refused() {
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(config)).unwrap();
    let missing = producer.send(Message::new("no-such-topic", "x"));
    assert!(
        matches!(&missing, Err(ClientError::TopicNotFound { topic }) if topic == "no-such-topic"),
        "{missing:?}"
    );
    let async_missing =
        futures_lite::future::block_on(producer.send_async(Message::new("no-such-topic", "x")));
    assert!(matches!(
        async_missing,
        Err(ClientError::TopicNotFound { .. })
    ));
    let huge = producer.send(Message::new(TOPIC, vec![0u8; 5 << 20]));
    assert!(
        matches!(huge, Err(ClientError::InvalidMessage { .. })),
        "{huge:?}"
    );
    // The producer still works.
    producer.send(Message::new(TOPIC, "fine")).unwrap();
    assert_eq!(producer.stats().pending_bytes, 0);
}
