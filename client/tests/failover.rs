//! Producers through broker failures. Over two broker groups, round-robin sends keep
//! succeeding when one is killed: sends that meet the dead broker (a lost connection, then
//! refused connects) are retried on the live one, and the dead one is avoided for a while,
//! even though the name server still routes to it until its registration expires. Keyed
//! sends keep their order across a broker crash and restart: batches in flight at the
//! crash are retried on their own queue once the broker is back (on a new port).

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client_config, pull_to_end, start_broker, wait_for_groups};
use spillway_client::{
    Message, MessageQueue, Producer, ProducerConfig, PullConsumer, BROKER_PAUSE,
};
use spillway_tests::{poll_until, NameServer, DEADLINE};
use spillway_wire::message::{
    RegisterBrokerRequest, RegisterBrokerResponse, ShardLayout, TopicConfig,
};
use spillway_wire::BrokerId;

const TOPIC: &str = "orders";
const QUEUES: u32 = 4;
const MESSAGES: usize = 200;

#[test]
fn round_robin_sends_keep_succeeding_after_one_broker_is_killed() {
    let name_server = NameServer::start(&[]);
    let _broker_a = start_broker(&name_server, "broker-a", TOPIC, QUEUES);
    let mut broker_b = start_broker(&name_server, "broker-b", TOPIC, QUEUES);
    wait_for_groups(&name_server, TOPIC, 2);
    let producer = Producer::start(ProducerConfig::new(client_config(&name_server))).unwrap();
    let topic: Arc<str> = Arc::from(TOPIC);

    let before: HashSet<String> = (0..MESSAGES)
        .map(|index| {
            let sent = producer
                .send(Message::new(topic.clone(), format!("before {index}")))
                .unwrap();
            sent.broker_name.to_string()
        })
        .collect();
    assert_eq!(before.len(), 2, "round-robin uses both groups: {before:?}");
    assert_eq!(producer.stats().retries, 0);

    let status = broker_b.kill();
    assert!(!status.success());

    // Blocking sends for longer than the pause on the dead broker (so round-robin comes
    // back to it and meets refused connects), then a burst of async ones: none fails.
    let killed_at = Instant::now();
    let mut after = 0;
    while after < MESSAGES || killed_at.elapsed() < BROKER_PAUSE * 5 / 2 {
        assert!(after < 1_000_000, "the send loop is bounded");
        let sent = producer
            .send(Message::new(topic.clone(), format!("after {after}")))
            .unwrap_or_else(|error| panic!("send {after} after the kill: {error}"));
        assert_eq!(&*sent.broker_name, "broker-a");
        after += 1;
    }
    let futures: Vec<_> = (0..MESSAGES)
        .map(|index| producer.send_async(Message::new(topic.clone(), format!("async {index}"))))
        .collect();
    for (index, future) in futures.into_iter().enumerate() {
        let sent = futures_lite::future::block_on(future)
            .unwrap_or_else(|error| panic!("async send {index} after the kill: {error}"));
        assert_eq!(&*sent.broker_name, "broker-a");
    }
    let stats = producer.stats();
    println!("after the kill: {stats:?}");
    // Once at the kill, and again each time the pause ran out.
    assert!(
        stats.retries >= 2,
        "sends did not meet the dead broker again: {stats:?}"
    );
    assert_eq!(stats.messages_failed, 0);
    assert_eq!(stats.messages_acknowledged, (2 * MESSAGES + after) as u64);
}

/// A send that fails the moment it is made (the group's address is one nothing can connect
/// to, so its connection is broken before the request goes) is retried on the other group,
/// which the sender may have looked at earlier in the same pass: the retry still goes. The
/// sender used to leave it in its slot until some other event woke it, so a blocking send
/// landing on the broken group waited for ever. Sends run on a thread of their own, so a
/// hang fails the test after the deadline instead of hanging the suite.
#[test]
fn a_send_refused_at_once_is_retried_on_the_other_group_without_waiting_for_an_event() {
    let name_server = NameServer::start(&[]);
    let _broker = start_broker(&name_server, "broker-a", TOPIC, QUEUES);
    // A second group whose master cannot be connected to: it sorts after broker-a, so the
    // sender registers (and looks at) broker-a's queues first.
    let ghost = RegisterBrokerRequest {
        cluster: "test".into(),
        broker_name: "z-ghost".into(),
        broker_id: BrokerId::MASTER,
        address: "127.0.0.1:0".into(),
        shard_count: 1,
        topics_version: 1,
        topics: vec![TopicConfig {
            topic: TOPIC.into(),
            queue_count: QUEUES,
            shard_layout: ShardLayout::RoundRobin,
        }],
    };
    name_server
        .connect()
        .call::<_, RegisterBrokerResponse>(&ghost, &[])
        .unwrap_or_else(|refused| panic!("registering the ghost group: {refused:?}"));
    wait_for_groups(&name_server, TOPIC, 2);
    let producer = Producer::start(ProducerConfig::new(client_config(&name_server))).unwrap();

    let (done, finished) = flume::bounded(1);
    let sender = {
        let producer = producer.clone();
        std::thread::spawn(move || {
            let topic: Arc<str> = Arc::from(TOPIC);
            for index in 0..MESSAGES {
                let sent = producer
                    .send(Message::new(topic.clone(), format!("message {index}")))
                    .unwrap_or_else(|error| panic!("send {index}: {error}"));
                assert_eq!(&*sent.broker_name, "broker-a");
            }
            let _ = done.send(());
        })
    };
    let outcome = finished.recv_timeout(DEADLINE);
    assert!(
        outcome.is_ok() || sender.is_finished(),
        "blocking sends stuck behind a retry for {DEADLINE:?}: {:?}",
        producer.stats()
    );
    sender.join().expect("the sending thread");
    let stats = producer.stats();
    assert!(stats.retries >= 1, "no send met the ghost group: {stats:?}");
    assert_eq!(stats.messages_acknowledged, MESSAGES as u64);
}

#[test]
fn keyed_sends_keep_their_order_across_a_broker_crash_and_restart() {
    const KEYS: usize = 3;
    const WINDOW: usize = 64;
    let name_server = NameServer::start(&[]);
    let mut broker = start_broker(&name_server, "broker-a", TOPIC, QUEUES);
    wait_for_groups(&name_server, TOPIC, 1);
    let config = client_config(&name_server);
    // Enough retries, spaced out, to outlast a restart (the broker comes back on a new
    // port, which the route learns once it registers again).
    let producer = Producer::start(ProducerConfig {
        retries: 60,
        retry_backoff: Duration::from_millis(20),
        ..ProducerConfig::new(config.clone())
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let producer = producer.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let topic: Arc<str> = Arc::from(TOPIC);
            let mut window = VecDeque::new();
            let mut placed: Vec<Vec<(String, u32)>> = vec![Vec::new(); KEYS];
            let mut index = 0usize;
            while !stop.load(Ordering::Relaxed) {
                assert!(index < 10_000_000, "the send loop is bounded");
                let key = index % KEYS;
                let body = format!("key-{key} {:08}", index / KEYS);
                let send = producer.send_async_with_key(
                    Message::new(topic.clone(), body),
                    format!("key-{key}").as_bytes(),
                );
                window.push_back((key, send));
                index += 1;
                if window.len() >= WINDOW {
                    let (key, send) = window.pop_front().unwrap();
                    let sent = futures_lite::future::block_on(send)
                        .unwrap_or_else(|error| panic!("key {key}: {error}"));
                    placed[key].push((sent.broker_name.to_string(), sent.queue_id));
                }
            }
            for (key, send) in window {
                let sent = futures_lite::future::block_on(send)
                    .unwrap_or_else(|error| panic!("key {key}: {error}"));
                placed[key].push((sent.broker_name.to_string(), sent.queue_id));
            }
            (index, placed)
        })
    };
    let acknowledged = || producer.stats().messages_acknowledged;
    poll_until("sends before the crash", DEADLINE, || {
        (acknowledged() > 2_000).then_some(())
    });
    broker.kill();
    broker.restart();
    let at_restart = acknowledged();
    poll_until("sends after the restart", DEADLINE, || {
        (acknowledged() > at_restart + 2_000).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    let (sent, placed) = sender.join().unwrap();
    let stats = producer.stats();
    println!("{sent} keyed sends across a crash: {stats:?}");
    assert!(
        stats.retries > 0,
        "no batch was in flight at the crash: {stats:?}"
    );
    assert_eq!(stats.messages_failed, 0);

    let consumer = PullConsumer::new(config, "check").unwrap();
    for (key, places) in placed.iter().enumerate() {
        let (broker_name, queue_id) = &places[0];
        assert!(
            places.iter().all(|place| place == &places[0]),
            "key {key} moved queues"
        );
        let stored = pull_to_end(
            &consumer,
            &MessageQueue::new(TOPIC, broker_name, *queue_id),
            0,
        );
        let prefix = format!("key-{key} ");
        let sequence: Vec<usize> = stored
            .iter()
            .filter_map(|message| {
                let body = std::str::from_utf8(&message.body).unwrap();
                body.strip_prefix(&prefix)
                    .map(|number| number.parse().unwrap())
            })
            .collect();
        // A batch stored just before the crash, its answer lost, is stored again by its
        // retry (at least once): drop the repeats, and what is left must be every message
        // of the key, in send order.
        let mut seen = HashSet::new();
        let first_copies: Vec<usize> = sequence
            .into_iter()
            .filter(|number| seen.insert(*number))
            .collect();
        assert_eq!(
            first_copies,
            (0..places.len()).collect::<Vec<_>>(),
            "key {key}"
        );
    }
}
