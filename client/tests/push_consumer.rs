//! The push consumer against real brokers: a clustering group over two broker groups
//! shares the queues with no message lost and, once the split has settled after each
//! member joins, none of the messages sent after that delivered twice; a member that shuts down leaves the group at once
//! and its queues move to the others within seconds; broadcasting members each get every
//! message, and a local offsets file resumes a restarted one; a start timestamp skips the
//! messages stored before it; manual commits are the only ones, so a restarted consumer
//! resumes after the last of them; retries, panics and giving up keep the queue's order;
//! the pulls stop at `max_in_flight_per_queue` while the handler is busy; a handler may
//! shut its own consumer down; one process refuses two members with one client id.
//!
//! Nothing sleeps to let something happen: every wait polls the consumers or the brokers
//! against a deadline (`spillway_tests::poll_until`).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{client_config, start_broker, start_cluster, wait_for_groups};
use spillway_client::{
    allocate_average, Admin, ClientConfig, ClientError, ConsumeMode, ConsumeResult, Message,
    MessageHandler, MessageQueue, Producer, ProducerConfig, PullConsumer, PushConsumer,
    PushConsumerConfig, ReceivedMessage, StartFrom,
};
use spillway_tests::{poll_until, NameServer, DEADLINE};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";
/// How long a member's queues may take to reach the others after it shuts down. The
/// others notice at their next rebalance (every second by default).
const HANDOVER_LIMIT: Duration = Duration::from_secs(5);

/// One call of a handler for one message.
#[derive(Clone, Debug)]
struct Delivery {
    member: usize,
    queue: MessageQueue,
    offset: u64,
    body: String,
}

/// Every delivery to every member of a test, in the order the handlers saw them.
#[derive(Clone, Default)]
struct Recorder {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
}

impl Recorder {
    fn record(&self, member: usize, message: &ReceivedMessage) {
        self.deliveries.lock().unwrap().push(Delivery {
            member,
            queue: message.queue(),
            offset: message.offset,
            body: String::from_utf8_lossy(&message.body).into_owned(),
        });
    }

    /// A per-message handler recording as `member`.
    fn handler(&self, member: usize) -> MessageHandler {
        let recorder = self.clone();
        MessageHandler::per_message(move |message| {
            recorder.record(member, message);
            ConsumeResult::Success
        })
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// How many times each body was delivered.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for delivery in self.deliveries.lock().unwrap().iter() {
            *counts.entry(delivery.body.clone()).or_default() += 1;
        }
        counts
    }

    /// Waits until every one of `bodies` was delivered at least once.
    fn wait_for(&self, what: &str, bodies: &[String]) {
        poll_until(what, DEADLINE, || {
            let counts = self.counts();
            bodies
                .iter()
                .all(|body| counts.contains_key(body))
                .then_some(())
        });
    }
}

/// A push consumer config for `group` starting from the earliest message.
fn consumer_config(config: &ClientConfig, group: &str) -> PushConsumerConfig {
    PushConsumerConfig {
        start_from: StartFrom::Earliest,
        ..PushConsumerConfig::new(config.clone(), group, TOPIC)
    }
}

/// `config` for member `index` of a group: its own client id (a cloned `ClientConfig`
/// keeps the id, and one id is one member).
fn member_config(config: &PushConsumerConfig, index: usize) -> PushConsumerConfig {
    let mut config = config.clone();
    config.client.client_id = format!("{}-member-{index}", config.client.client_id);
    config
}

/// Sends `count` messages named `{phase}-{index}` round-robin over the queues.
fn produce(producer: &Producer, phase: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let body = format!("{phase}-{index}");
            producer
                .send(Message::new(TOPIC, body.clone()))
                .unwrap_or_else(|error| panic!("send {body}: {error}"));
            body
        })
        .collect()
}

/// Waits until every member owns exactly its share of `queues` by the average strategy
/// over the members' ids, so no queue has two owners; returns how long it took.
fn wait_until_settled(members: &[&PushConsumer], queues: &[MessageQueue]) -> Duration {
    let started = Instant::now();
    let ids: Vec<String> = members
        .iter()
        .map(|member| member.client().client_id().to_owned())
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "distinct members"
    );
    poll_until(
        &format!("{} members to settle", members.len()),
        DEADLINE,
        || {
            members
                .iter()
                .zip(&ids)
                .all(|(member, id)| member.assigned_queues() == allocate_average(queues, &ids, id))
                .then_some(())
        },
    );
    let mut owned: Vec<MessageQueue> = members
        .iter()
        .flat_map(|member| member.assigned_queues())
        .collect();
    owned.sort();
    let mut all = queues.to_vec();
    all.sort();
    assert_eq!(owned, all, "every queue has exactly one owner");
    started.elapsed()
}

/// Sends messages named `churn-{n}` until told to stop; returns their bodies.
fn churn(producer: &Producer, stop: &AtomicBool, first: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        assert!(bodies.len() < 1_000_000, "the churn loop is bounded");
        let body = format!("churn-{}", first + bodies.len());
        producer
            .send(Message::new(TOPIC, body.clone()))
            .unwrap_or_else(|error| panic!("send {body}: {error}"));
        bodies.push(body);
    }
    bodies
}

/// Starts member `index` while messages keep arriving; returns it and the messages sent
/// until the group settled.
fn join_under_load(
    producer: &Producer,
    recorder: &Recorder,
    config: &PushConsumerConfig,
    members: &mut Vec<PushConsumer>,
    queues: &[MessageQueue],
    churn_sent: &mut Vec<String>,
) {
    let stop = AtomicBool::new(false);
    let first = churn_sent.len();
    /// Stops the sender however the scope ends (a failed wait panics).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let sent = std::thread::scope(|scope| {
        let _stop_on_drop = StopOnDrop(&stop);
        let sender = scope.spawn(|| churn(producer, &stop, first));
        let index = members.len();
        members.push(
            PushConsumer::start(member_config(config, index), recorder.handler(index)).unwrap(),
        );
        let refs: Vec<&PushConsumer> = members.iter().collect();
        wait_until_settled(&refs, queues);
        stop.store(true, Ordering::Relaxed);
        sender.join().unwrap()
    });
    churn_sent.extend(sent);
}

#[test]
fn clustering_members_share_queues_exactly_once_after_each_join_settles() {
    let name_server = NameServer::start(&[]);
    let _broker_a = start_broker(&name_server, "broker-a", TOPIC, 4);
    let _broker_b = start_broker(&name_server, "broker-b", TOPIC, 4);
    wait_for_groups(&name_server, TOPIC, 2);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let queues = PullConsumer::new(client.clone(), "lister")
        .unwrap()
        .queues(TOPIC)
        .unwrap();
    assert_eq!(queues.len(), 8);
    let recorder = Recorder::default();
    let config = consumer_config(&client, GROUP);
    let mut members: Vec<PushConsumer> = Vec::new();
    let mut churn_sent = Vec::new();
    let mut phases: Vec<Vec<String>> = Vec::new();

    for size in 1..=3 {
        join_under_load(
            &producer,
            &recorder,
            &config,
            &mut members,
            &queues,
            &mut churn_sent,
        );
        assert_eq!(members.len(), size);
        // Settled: a fresh phase is delivered exactly once, each message by the owner of
        // its queue.
        let phase = produce(&producer, &format!("phase{size}"), 200);
        recorder.wait_for(&format!("phase {size}"), &phase);
        let counts = recorder.counts();
        for body in &phase {
            assert_eq!(counts[body], 1, "{body} with {size} members");
        }
        let wanted: BTreeSet<&String> = phase.iter().collect();
        for delivery in recorder.deliveries() {
            if wanted.contains(&delivery.body) {
                let owner = &members[delivery.member];
                assert!(
                    owner.assigned_queues().contains(&delivery.queue),
                    "{delivery:?} by a member not owning the queue"
                );
            }
        }
        // Every member took part.
        let members_seen: BTreeSet<usize> = recorder
            .deliveries()
            .iter()
            .filter(|delivery| wanted.contains(&delivery.body))
            .map(|delivery| delivery.member)
            .collect();
        assert_eq!(members_seen.len(), size);
        phases.push(phase);
    }

    // Across the whole test nothing is lost. A join may deliver some messages handled
    // before it again (the new owner of a queue can read its committed offset before the
    // old owner's final commit), so earlier phases are at least once; the last phase,
    // with no change after it, is still exactly once.
    recorder.wait_for("the messages sent while members joined", &churn_sent);
    let counts = recorder.counts();
    assert!(churn_sent
        .iter()
        .chain(phases.iter().flatten())
        .all(|body| counts[body] >= 1));
    for body in phases.last().unwrap() {
        assert_eq!(counts[body], 1, "{body}");
    }
    for member in &members {
        member.shutdown().unwrap();
        assert!(member.assigned_queues().is_empty());
    }
}

#[test]
fn a_member_shutting_down_hands_its_queues_to_the_others_within_seconds() {
    let (name_server, broker) = start_cluster(TOPIC, 6);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let admin = Admin::new(client.clone()).unwrap();
    let queues = PullConsumer::new(client.clone(), "lister")
        .unwrap()
        .queues(TOPIC)
        .unwrap();
    let recorder = Recorder::default();
    let config = consumer_config(&client, GROUP);
    let members: Vec<PushConsumer> = (0..3)
        .map(|index| {
            PushConsumer::start(member_config(&config, index), recorder.handler(index)).unwrap()
        })
        .collect();
    wait_until_settled(&members.iter().collect::<Vec<_>>(), &queues);
    let before = produce(&producer, "before", 120);
    recorder.wait_for("messages before the shutdown", &before);

    let leaving = &members[1];
    let leaving_id = leaving.client().client_id().to_owned();
    assert!(!leaving.assigned_queues().is_empty());
    let started = Instant::now();
    leaving.shutdown().unwrap();
    assert!(leaving.assigned_queues().is_empty());
    // It left the group explicitly: the broker no longer lists it, without waiting for
    // its connection to close or its heartbeats to time out.
    let listed = admin
        .consumer_group_members(&broker.address().to_string(), GROUP)
        .unwrap();
    assert!(!listed.contains(&leaving_id), "{listed:?}");
    assert_eq!(listed.len(), 2);
    let remaining = [&members[0], &members[2]];
    wait_until_settled(&remaining, &queues);
    let handover = started.elapsed();
    assert!(
        handover < HANDOVER_LIMIT,
        "the queues took {handover:?} to move"
    );

    let after = produce(&producer, "after", 120);
    recorder.wait_for("messages after the shutdown", &after);
    let counts = recorder.counts();
    for body in &after {
        assert_eq!(counts[body], 1, "{body}");
    }
    assert!(recorder
        .deliveries()
        .iter()
        .filter(|delivery| after.contains(&delivery.body))
        .all(|delivery| delivery.member != 1));
    for body in &before {
        assert_eq!(counts[body], 1, "{body} was delivered before the handover");
    }
    // The group's committed offsets reach the end of every queue: the final commits of
    // the member that left, and the others' automatic ones.
    poll_until("the group's commits to reach the end", DEADLINE, || {
        let lag = admin.consumer_lag(GROUP, TOPIC).unwrap();
        (lag.total == 0 && lag.queues.iter().all(|queue| queue.committed.is_some())).then_some(())
    });
}

#[test]
fn broadcasting_members_each_get_every_message() {
    let (name_server, _broker) = start_cluster(TOPIC, 4);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let early = produce(&producer, "early", 100);
    let recorder = Recorder::default();
    let config = PushConsumerConfig {
        mode: ConsumeMode::Broadcasting,
        consume_batch: 8,
        ..consumer_config(&client, "cache")
    };
    let members: Vec<PushConsumer> = (0..2)
        .map(|member| {
            let recorder = recorder.clone();
            let handler = MessageHandler::per_batch(move |batch| {
                assert!(!batch.is_empty() && batch.len() <= 8, "{}", batch.len());
                assert!(batch
                    .windows(2)
                    .all(|pair| pair[0].queue() == pair[1].queue()
                        && pair[0].offset < pair[1].offset));
                for message in batch {
                    recorder.record(member, message);
                }
                ConsumeResult::Success
            });
            PushConsumer::start(member_config(&config, member), handler).unwrap()
        })
        .collect();
    let late = produce(&producer, "late", 100);
    let all: Vec<String> = early.iter().chain(&late).cloned().collect();
    poll_until("both members to get every message", DEADLINE, || {
        let deliveries = recorder.deliveries();
        (0..2)
            .all(|member| {
                let bodies: BTreeSet<&String> = deliveries
                    .iter()
                    .filter(|delivery| delivery.member == member)
                    .map(|delivery| &delivery.body)
                    .collect();
                all.iter().all(|body| bodies.contains(body))
            })
            .then_some(())
    });
    let counts = recorder.counts();
    for body in &all {
        assert_eq!(counts[body], 2, "{body}: once per member");
    }
    for member in &members {
        assert_eq!(member.assigned_queues().len(), 4);
        member.shutdown().unwrap();
    }
    // Broadcasting commits nothing to the brokers.
    let lag = Admin::new(client)
        .unwrap()
        .consumer_lag("cache", TOPIC)
        .unwrap();
    assert!(lag.queues.iter().all(|queue| queue.committed.is_none()));
}

#[test]
fn broadcasting_offsets_file_resumes_a_restarted_member() {
    let (name_server, _broker) = start_cluster(TOPIC, 2);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let directory = tempfile::tempdir().unwrap();
    let config = PushConsumerConfig {
        mode: ConsumeMode::Broadcasting,
        offset_store_path: Some(directory.path().join("offsets")),
        ..consumer_config(&client, "cache")
    };
    let first_run = Recorder::default();
    let consumer = PushConsumer::start(config.clone(), first_run.handler(0)).unwrap();
    let first = produce(&producer, "first", 50);
    first_run.wait_for("the first run's messages", &first);
    consumer.shutdown().unwrap();
    drop(consumer);

    let second = produce(&producer, "second", 50);
    let second_run = Recorder::default();
    let restarted = PushConsumer::start(config, second_run.handler(0)).unwrap();
    second_run.wait_for("the second run's messages", &second);
    let third = produce(&producer, "third", 10);
    second_run.wait_for("messages after the restart", &third);
    // Each queue is read in order: the messages from before the restart would have come
    // before these.
    let counts = second_run.counts();
    assert!(first.iter().all(|body| !counts.contains_key(body)));
    assert!(second.iter().chain(&third).all(|body| counts[body] == 1));
    restarted.shutdown().unwrap();
}

#[test]
fn start_timestamp_skips_messages_stored_before_it() {
    let (name_server, _broker) = start_cluster(TOPIC, 4);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let before = produce(&producer, "before", 40);
    // The last stored time of the messages before: read back from every queue.
    let reader = PullConsumer::new(client.clone(), "reader").unwrap();
    let last_before = common::pull_topic(&reader, TOPIC)
        .iter()
        .map(|message| message.store_timestamp_ms)
        .max()
        .unwrap();
    // The broker shares this clock: once it has moved on, later messages are stored later.
    poll_until("the clock to move on", DEADLINE, || {
        (now_ms() > last_before).then_some(())
    });
    let after = produce(&producer, "after", 40);

    let recorder = Recorder::default();
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            start_from: StartFrom::Timestamp(last_before + 1),
            ..PushConsumerConfig::new(client, "history", TOPIC)
        },
        recorder.handler(0),
    )
    .unwrap();
    recorder.wait_for("the messages after the timestamp", &after);
    // Round-robin put messages after the timestamp in every queue, and each queue is
    // handled in order, so an earlier message would already have been delivered.
    let queues: BTreeSet<MessageQueue> = recorder
        .deliveries()
        .iter()
        .map(|delivery| delivery.queue.clone())
        .collect();
    assert_eq!(queues.len(), 4);
    let counts = recorder.counts();
    assert!(before.iter().all(|body| !counts.contains_key(body)));
    assert!(after.iter().all(|body| counts[body] == 1));
    consumer.shutdown().unwrap();
}

#[test]
fn manual_commits_are_the_only_ones_and_a_restart_resumes_after_the_last() {
    let (name_server, _broker) = start_cluster(TOPIC, 1);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let reader = PullConsumer::new(client.clone(), GROUP).unwrap();
    let queue = reader.queues(TOPIC).unwrap().remove(0);
    let config = PushConsumerConfig {
        auto_commit_interval: None,
        ..consumer_config(&client, GROUP)
    };
    let first_run = Recorder::default();
    let consumer = PushConsumer::start(config.clone(), first_run.handler(0)).unwrap();
    let committed = produce(&producer, "committed", 10);
    first_run.wait_for("the first ten", &committed);
    consumer.commit().unwrap();
    assert_eq!(reader.committed_offset(&queue).unwrap(), Some(10));
    // Handled, never committed: not even at shutdown.
    let uncommitted = produce(&producer, "uncommitted", 10);
    first_run.wait_for("the next ten", &uncommitted);
    let handle = consumer.commit_handle();
    consumer.shutdown().unwrap();
    assert_eq!(reader.committed_offset(&queue).unwrap(), Some(10));
    drop(consumer);
    assert!(matches!(handle.commit(), Err(ClientError::Closed)));

    let second_run = Recorder::default();
    let restarted = PushConsumer::start(config, second_run.handler(0)).unwrap();
    second_run.wait_for("the uncommitted ten again", &uncommitted);
    let offsets: Vec<u64> = second_run
        .deliveries()
        .iter()
        .map(|delivery| delivery.offset)
        .collect();
    assert_eq!(offsets, (10..20).collect::<Vec<u64>>());
    // A commit handle, used from another thread, commits what was handled.
    let handle = restarted.commit_handle();
    std::thread::spawn(move || handle.commit())
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(reader.committed_offset(&queue).unwrap(), Some(20));
    restarted.shutdown().unwrap();
}

#[test]
fn retries_and_panics_keep_the_order_and_give_up_after_the_limit() {
    let (name_server, _broker) = start_cluster(TOPIC, 1);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let bodies = ["ok-0", "flaky", "poison", "panics", "ok-1"];
    for body in bodies {
        producer.send(Message::new(TOPIC, body)).unwrap();
    }
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let handler = {
        let calls = calls.clone();
        MessageHandler::per_message(move |message| {
            let body = String::from_utf8_lossy(&message.body).into_owned();
            let seen = {
                let mut calls = calls.lock().unwrap();
                calls.push(body.clone());
                calls.iter().filter(|call| **call == body).count()
            };
            match body.as_str() {
                "flaky" if seen < 3 => ConsumeResult::Retry,
                "poison" => ConsumeResult::Retry,
                "panics" if seen == 1 => panic!("the handler fails on purpose"),
                _ => ConsumeResult::Success,
            }
        })
    };
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            consume_retries: 3,
            retry_pause: Duration::from_millis(10),
            ..consumer_config(&client, GROUP)
        },
        handler,
    )
    .unwrap();
    poll_until("the last message", DEADLINE, || {
        calls
            .lock()
            .unwrap()
            .contains(&"ok-1".to_owned())
            .then_some(())
    });
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        [
            "ok-0", "flaky", "flaky", "flaky", "poison", "poison", "poison", "poison", "panics",
            "panics", "ok-1"
        ]
    );
    let stats = consumer.stats();
    assert_eq!(stats.messages_handled, 4);
    assert_eq!(stats.messages_given_up, 1);
    assert_eq!(stats.handler_retries, 2 + 3 + 1);
    // Given up counts as done: the offset moves past every message.
    let reader = PullConsumer::new(client, GROUP).unwrap();
    let queue = reader.queues(TOPIC).unwrap().remove(0);
    poll_until("the commit past the last message", DEADLINE, || {
        (reader.committed_offset(&queue).unwrap() == Some(5)).then_some(())
    });
    consumer.shutdown().unwrap();
}

#[test]
fn pulls_stop_at_max_in_flight_while_the_handler_is_busy() {
    let (name_server, _broker) = start_cluster(TOPIC, 1);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let sent = produce(&producer, "held", 100);
    let (open_gate, gate) = flume::unbounded::<()>();
    let recorder = Recorder::default();
    let handler = {
        let recorder = recorder.clone();
        MessageHandler::per_message(move |message| {
            // The first message waits until the test opens the gate (bounded, so a
            // failed test does not hang its shutdown).
            if message.offset == 0 {
                gate.recv_timeout(DEADLINE).unwrap();
            }
            recorder.record(0, message);
            ConsumeResult::Success
        })
    };
    let consumer = PushConsumer::start(
        PushConsumerConfig {
            max_in_flight_per_queue: 10,
            pull_batch: 4,
            ..consumer_config(&client, GROUP)
        },
        handler,
    )
    .unwrap();
    poll_until("the pulls to fill the queue's room", DEADLINE, || {
        (consumer.stats().messages_in_flight == 10).then_some(())
    });
    assert!(recorder.deliveries().is_empty());
    open_gate.send(()).unwrap();
    recorder.wait_for("every message", &sent);
    let offsets: Vec<u64> = recorder
        .deliveries()
        .iter()
        .map(|delivery| delivery.offset)
        .collect();
    assert_eq!(offsets, (0..100).collect::<Vec<u64>>());
    consumer.shutdown().unwrap();
}

#[test]
fn a_second_consumer_of_one_group_and_client_id_is_refused() {
    let (name_server, _broker) = start_cluster(TOPIC, 1);
    let config = consumer_config(&client_config(&name_server), GROUP);
    let recorder = Recorder::default();
    let first = PushConsumer::start(config.clone(), recorder.handler(0)).unwrap();
    // Another client, but the same id: the brokers would see one member.
    let second = PushConsumer::start(config.clone(), recorder.handler(1));
    let refusal = second.unwrap_err().to_string();
    assert!(refusal.contains("own client_id"), "{refusal}");
    // Another group is fine.
    let other_group = PushConsumer::start(
        consumer_config(&config.client, "audit"),
        recorder.handler(2),
    )
    .unwrap();
    let unknown = PushConsumer::start(
        PushConsumerConfig::new(member_config(&config, 3).client, GROUP, "no-such-topic"),
        recorder.handler(3),
    );
    assert!(
        matches!(unknown, Err(ClientError::TopicNotFound { .. })),
        "{unknown:?}"
    );
    first.shutdown().unwrap();
    // Once the first has shut down, the group and id are free again.
    let again = PushConsumer::start(config, recorder.handler(4)).unwrap();
    again.shutdown().unwrap();
    other_group.shutdown().unwrap();
}

#[test]
fn shutdown_from_the_handler_does_not_wait_for_itself() {
    let (name_server, broker) = start_cluster(TOPIC, 2);
    let client = client_config(&name_server);
    let producer = Producer::start(ProducerConfig::new(client.clone())).unwrap();
    let slot: Arc<Mutex<Option<PushConsumer>>> = Arc::default();
    let recorder = Recorder::default();
    let handler = {
        let slot = slot.clone();
        let recorder = recorder.clone();
        MessageHandler::per_message(move |message| {
            recorder.record(0, message);
            if message.body == "stop" {
                let consumer = slot.lock().unwrap();
                consumer.as_ref().unwrap().shutdown().unwrap();
            }
            ConsumeResult::Success
        })
    };
    let consumer = PushConsumer::start(consumer_config(&client, GROUP), handler).unwrap();
    let id = consumer.client().client_id().to_owned();
    *slot.lock().unwrap() = Some(consumer);
    producer.send(Message::new(TOPIC, "stop")).unwrap();
    recorder.wait_for("the stop message", &["stop".to_owned()]);
    // The shutdown completes once the handler has returned: the queues are released
    // and the group is left.
    let admin = Admin::new(client).unwrap();
    poll_until("the consumer to finish shutting down", DEADLINE, || {
        let consumer = slot.lock().unwrap();
        let released = consumer.as_ref().unwrap().assigned_queues().is_empty();
        let members = admin
            .consumer_group_members(&broker.address().to_string(), GROUP)
            .unwrap();
        (released && !members.contains(&id)).then_some(())
    });
    // Dropping it (the handler's reference is in the slot) joins nothing more.
    let consumer = slot.lock().unwrap().take().unwrap();
    consumer.shutdown().unwrap();
    drop(consumer);
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}
