//! Batching and its bounds: messages sent with a key all go to one queue and keep their
//! order there, even with many small batches in flight; many async sends within the linger
//! share far fewer produce requests; a producer never holds more unacknowledged bytes than
//! `max_pending_bytes`, and senders wait (rather than fail) while it is full; with no
//! failures, one producer's round-robin messages keep their send order within each queue,
//! also when they had to wait in the parked queue (for the first route, for memory); with
//! `send_when_idle`, a batch for an idle shard goes at once.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{client_config, pull_to_end, pull_topic, start_cluster};
use spillway_client::{
    Message, MessageQueue, Producer, ProducerConfig, PullConsumer, RequestTimings,
};

const TOPIC: &str = "orders";
const QUEUES: u32 = 8;

#[test]
fn messages_with_one_key_go_to_one_queue_in_send_order() {
    const KEYS: usize = 4;
    const PER_KEY: usize = 400;
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    // Small batches and no linger: many batches per queue, each sent as soon as possible.
    let producer = Producer::start(ProducerConfig {
        linger: Duration::ZERO,
        batch_bytes: 4 << 10,
        ..ProducerConfig::new(config.clone())
    })
    .unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);
    let mut futures = Vec::new();
    for index in 0..PER_KEY {
        for key in 0..KEYS {
            let body = format!("key-{key} {index:05} {}", "x".repeat(200));
            let key_bytes = format!("key-{key}");
            futures.push((
                key,
                index,
                producer
                    .send_async_with_key(Message::new(topic.clone(), body), key_bytes.as_bytes()),
            ));
        }
    }
    let mut placed: HashMap<usize, Vec<(String, u32, u64)>> = HashMap::new();
    for (key, index, future) in futures {
        let sent = futures_lite::future::block_on(future)
            .unwrap_or_else(|error| panic!("key {key} message {index}: {error}"));
        placed.entry(key).or_default().push((
            sent.broker_name.to_string(),
            sent.queue_id,
            sent.offset,
        ));
    }
    assert!(producer.stats().produce_requests > 1);

    let consumer = PullConsumer::new(config, "check").unwrap();
    for key in 0..KEYS {
        let places = &placed[&key];
        let (broker, queue, _) = &places[0];
        assert!(
            places.iter().all(|(b, q, _)| (b, q) == (broker, queue)),
            "key {key} went to several queues"
        );
        assert!(
            places.windows(2).all(|pair| pair[0].2 < pair[1].2),
            "key {key}: offsets out of send order"
        );
        // Stored in send order too.
        let stored = pull_to_end(&consumer, &MessageQueue::new(TOPIC, broker, *queue), 0);
        let prefix = format!("key-{key} ");
        let indexes: Vec<usize> = stored
            .iter()
            .filter_map(|message| {
                let body = std::str::from_utf8(&message.body).unwrap();
                body.strip_prefix(&prefix)
                    .map(|rest| rest[..5].parse().unwrap())
            })
            .collect();
        assert_eq!(indexes, (0..PER_KEY).collect::<Vec<_>>(), "key {key}");
    }
}

#[test]
fn async_sends_within_the_linger_share_few_produce_requests() {
    const MESSAGES: usize = 1000;
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig {
        linger: Duration::from_millis(20),
        ..ProducerConfig::new(config.clone())
    })
    .unwrap();
    // Learn the route first, so every send is encoded at once.
    producer.client().topic_route(TOPIC).unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);
    let futures: Vec<_> = (0..MESSAGES)
        .map(|index| producer.send_async(Message::new(topic.clone(), format!("message {index}"))))
        .collect();
    for future in futures {
        futures_lite::future::block_on(future).unwrap();
    }
    let stats = producer.stats();
    println!("{MESSAGES} messages in {stats:?}");
    assert_eq!(stats.messages_acknowledged, MESSAGES as u64);
    assert!(
        stats.produce_requests * 20 <= MESSAGES as u64,
        "{} produce requests for {MESSAGES} messages",
        stats.produce_requests
    );
    // Each request carried a part per queue, not one per message.
    assert!(stats.produce_parts <= stats.produce_requests * u64::from(QUEUES));
    // Every answered request was timed, and its batches waited out the linger before it
    // was written.
    let timings = producer.request_timings();
    assert_eq!(timings.requests(), stats.produce_requests);
    assert!(
        timings.batch_wait_us.max() >= 19_000,
        "batch wait {}",
        RequestTimings::describe(&timings.batch_wait_us)
    );
    assert!(timings.round_trip_us.min() > 0);
    let consumer = PullConsumer::new(config, "check").unwrap();
    assert_eq!(pull_topic(&consumer, TOPIC).len(), MESSAGES);
}

#[test]
fn send_when_idle_sends_at_once_and_lingers_only_behind_a_request_in_flight() {
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let producer = Producer::start(ProducerConfig {
        // Far longer than the test may take: only the idle rule can send these.
        linger: Duration::from_secs(600),
        send_when_idle: true,
        ..ProducerConfig::new(client_config(&name_server))
    })
    .unwrap();
    producer.client().topic_route(TOPIC).unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);
    // One at a time: each send finds its shard idle and goes at once.
    for index in 0..20 {
        let future = producer.send_async(Message::new(topic.clone(), format!("alone {index}")));
        let (done, answered) = flume::bounded(1);
        std::thread::spawn(move || {
            let _ = done.send(futures_lite::future::block_on(future));
        });
        let result = answered
            .recv_timeout(Duration::from_secs(30))
            .expect("a send to an idle shard waited for its 600 s linger");
        result.unwrap();
    }
    assert_eq!(producer.stats().produce_requests, 20);
    // Many at once: all but the first batches per shard wait behind a request in flight,
    // so they share few requests, and every one is answered without the linger running out.
    let futures: Vec<_> = (0..1000)
        .map(|index| producer.send_async(Message::new(topic.clone(), format!("burst {index}"))))
        .collect();
    let (done, answered) = flume::bounded(1);
    std::thread::spawn(move || {
        for future in futures {
            futures_lite::future::block_on(future).unwrap();
        }
        let _ = done.send(());
    });
    answered
        .recv_timeout(Duration::from_secs(30))
        .expect("a burst waited for its 600 s linger");
    let requests = producer.stats().produce_requests - 20;
    assert!(
        requests <= 50,
        "{requests} produce requests for a burst of 1000"
    );
}

#[test]
fn round_robin_messages_keep_send_order_within_each_queue_through_parking() {
    const MESSAGES: usize = 30_000;
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    // A small memory bound: sends park for memory over and over, and the first ones park
    // for the route; the parked queue is drained by the sender thread while this thread
    // keeps sending.
    let producer = Producer::start(ProducerConfig {
        batch_bytes: 4 << 10,
        max_message_bytes: 4 << 10,
        max_pending_bytes: 64 << 10,
        ..ProducerConfig::new(client_config(&name_server))
    })
    .unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);
    let futures: Vec<_> = (0..MESSAGES)
        .map(|index| producer.send_async(Message::new(topic.clone(), format!("{index:08}"))))
        .collect();
    let mut last_offset: HashMap<u32, (u64, usize)> = HashMap::new();
    for (index, future) in futures.into_iter().enumerate() {
        let sent = futures_lite::future::block_on(future)
            .unwrap_or_else(|error| panic!("message {index}: {error}"));
        if let Some(&(offset, earlier)) = last_offset.get(&sent.queue_id) {
            assert!(
                sent.offset > offset,
                "message {index} stored at offset {} of queue {}, before message {earlier} \
                 at offset {offset}",
                sent.offset,
                sent.queue_id
            );
        }
        last_offset.insert(sent.queue_id, (sent.offset, index));
    }
    assert!(
        producer.stats().messages_parked > 0,
        "nothing parked: the test saw no waits"
    );
}

#[test]
fn senders_wait_while_pending_bytes_are_at_the_limit() {
    const MESSAGES: usize = 2000;
    const LIMIT: usize = 64 << 10;
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    let producer = Producer::start(ProducerConfig {
        batch_bytes: 16 << 10,
        max_message_bytes: 16 << 10,
        max_pending_bytes: LIMIT,
        ..ProducerConfig::new(config.clone())
    })
    .unwrap();
    let body = vec![7u8; 1 << 10];
    let message_bytes = Message::new(TOPIC, body.clone()).encoded_len();
    let done = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let producer = producer.clone();
        let done = done.clone();
        let highest = highest.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                highest.fetch_max(producer.stats().pending_bytes, Ordering::Relaxed);
                std::thread::yield_now();
            }
        })
    };
    for _ in 0..MESSAGES {
        producer
            .send_oneway(Message::new(TOPIC, body.clone()))
            .unwrap();
    }
    producer.flush().unwrap();
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let stats = producer.stats();
    assert_eq!(stats.messages_acknowledged, MESSAGES as u64);
    assert_eq!(stats.pending_bytes, 0);
    let highest = highest.load(Ordering::Relaxed);
    assert!(highest > 0, "the watcher saw nothing pending");
    // Concurrent takers may overshoot by what is in the middle of being checked: one
    // message here (a single sending thread).
    assert!(
        highest <= LIMIT + message_bytes,
        "{highest} bytes pending, above the limit of {LIMIT}"
    );
    assert!(
        MESSAGES * message_bytes > 10 * LIMIT,
        "the test must exceed the limit"
    );
    let consumer = PullConsumer::new(config, "check").unwrap();
    assert_eq!(pull_topic(&consumer, TOPIC).len(), MESSAGES);
}

#[test]
fn async_sends_go_out_even_if_their_futures_are_awaited_late_or_dropped() {
    const MESSAGES: usize = 4000;
    let (name_server, _broker) = start_cluster(TOPIC, QUEUES);
    let config = client_config(&name_server);
    // Every send is made before the topic's route is known, and most of them while memory
    // is full: they park. A long linger would make a lazily-sent future wait for it, one
    // future after the other (MESSAGES x 200 ms): parked messages must go out by themselves.
    let producer = Producer::start(ProducerConfig {
        linger: Duration::from_millis(200),
        batch_bytes: 16 << 10,
        max_message_bytes: 16 << 10,
        max_pending_bytes: 64 << 10,
        ..ProducerConfig::new(config.clone())
    })
    .unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);
    let body = vec![5u8; 1 << 10];
    let started = std::time::Instant::now();
    let futures: Vec<_> = (0..MESSAGES)
        .map(|_| producer.send_async(Message::new(topic.clone(), body.clone())))
        .collect();
    // Drop every other future: its message is sent all the same.
    let kept: Vec<_> = futures.into_iter().step_by(2).collect();
    for future in kept {
        futures_lite::future::block_on(future).unwrap();
    }
    producer.flush().unwrap();
    let elapsed = started.elapsed();
    let stats = producer.stats();
    println!("{MESSAGES} parked sends in {elapsed:?}: {stats:?}");
    assert!(stats.messages_parked > 0, "nothing waited: {stats:?}");
    assert_eq!(stats.messages_acknowledged, MESSAGES as u64);
    assert!(
        elapsed < spillway_tests::DEADLINE,
        "parked sends took {elapsed:?}: they waited for their futures"
    );
    let consumer = PullConsumer::new(config, "check").unwrap();
    assert_eq!(pull_topic(&consumer, TOPIC).len(), MESSAGES);
}
