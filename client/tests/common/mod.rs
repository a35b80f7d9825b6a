//! What the client's integration tests share: a name server and brokers started as real
//! processes (the `spillway-tests` harness), a client configuration pointing at them, and
//! helpers that read a queue back to its end.
//!
//! Nothing here sleeps to let something happen: waits for a route or for data poll the
//! real servers against a deadline (`spillway_tests::poll_until`).

#![allow(dead_code)]

use std::time::Duration;

use spillway_client::{ClientConfig, MessageQueue, PullConsumer, PullStatus, ReceivedMessage};
use spillway_tests::{poll_until, Broker, BrokerConfigBuilder, NameServer, DEADLINE};

/// A name server and one broker (`broker-a`, cluster `test`) holding `topic` with `queues`
/// queues, whose route the name server already serves.
pub fn start_cluster(topic: &str, queues: u32) -> (NameServer, Broker) {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(topic, queues)
        .start();
    wait_for_groups(&name_server, topic, 1);
    (name_server, broker)
}

/// Starts broker `broker_name` registering with `name_server`, holding `topic`.
pub fn start_broker(
    name_server: &NameServer,
    broker_name: &str,
    topic: &str,
    queues: u32,
) -> Broker {
    BrokerConfigBuilder::new(&[name_server.address()])
        .broker_name(broker_name)
        .topic(topic, queues)
        .start()
}

/// Waits until the name server routes `topic` to `groups` broker groups.
pub fn wait_for_groups(name_server: &NameServer, topic: &str, groups: usize) {
    name_server
        .wait_for_route(topic, "the topic's route", |route| {
            route
                .as_ref()
                .is_ok_and(|route| route.brokers.len() == groups)
        })
        .unwrap_or_else(|refused| panic!("route of {topic}: {refused:?}"));
}

/// A client configuration for `name_server`, with a request timeout short enough for a
/// test to notice a hang.
pub fn client_config(name_server: &NameServer) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_secs(10),
        ..ClientConfig::new([name_server.address().to_string()])
    }
}

/// Every message of `queue` from `offset` to its current end.
pub fn pull_to_end(
    consumer: &PullConsumer,
    queue: &MessageQueue,
    offset: u64,
) -> Vec<ReceivedMessage> {
    let (_, end) = consumer.queue_offsets(queue).unwrap();
    let mut next = offset;
    let mut messages = Vec::new();
    poll_until(&format!("pulling {queue} to {end}"), DEADLINE, || {
        if next >= end {
            return Some(());
        }
        let pulled = consumer
            .pull(queue, next, 1024, Duration::from_millis(500), "*")
            .unwrap_or_else(|error| panic!("pull {queue} at {next}: {error}"));
        if pulled.status == PullStatus::Found {
            assert!(
                pulled.next_offset > next,
                "no progress at {next}: {pulled:?}"
            );
            next = pulled.next_offset;
            messages.extend(pulled.messages);
        }
        (next >= end).then_some(())
    });
    messages
}

/// Every message of every queue of `topic`.
pub fn pull_topic(consumer: &PullConsumer, topic: &str) -> Vec<ReceivedMessage> {
    consumer
        .queues(topic)
        .unwrap()
        .iter()
        .flat_map(|queue| pull_to_end(consumer, queue, 0))
        .collect()
}
