//! A broker and its name servers: the broker registers with every name server at start, so
//! its topics' routes appear there (its printed address, shard count, queue count, layout);
//! heartbeats keep them; a killed broker's routes expire after the name server's broker
//! timeout; a broker stopped with SIGTERM unregisters, so they go at once.

use spillway_tests::wait::keep_checking;
use std::time::{Duration, Instant};

use spillway_tests::broker::TEST_SHARD_COUNT;
use spillway_tests::{route_is_gone, Broker, BrokerConfigBuilder, NameServer};
use spillway_wire::message::{GetTopicRouteResponse, ShardLayout};
use spillway_wire::{BrokerId, QueueId, ShardId};

const TOPIC: &str = "orders";
const QUEUES: u32 = 4;
/// Broker timeout of the expiry test's name server: many heartbeat intervals (200 ms), so a
/// loaded machine cannot expire a live broker, and short enough for a quick test.
const BROKER_TIMEOUT_MS: u64 = 1500;
const SCAN_INTERVAL_MS: u64 = 200;

fn start_broker(name_servers: &[&NameServer]) -> Broker {
    let addresses: Vec<_> = name_servers
        .iter()
        .map(|name_server| name_server.address())
        .collect();
    BrokerConfigBuilder::new(&addresses)
        .broker_name("broker-a")
        .topic(TOPIC, QUEUES)
        .start()
}

fn wait_for_route(name_server: &NameServer, broker: &Broker) -> GetTopicRouteResponse {
    name_server
        .wait_for_route(TOPIC, "the broker's route", Result::is_ok)
        .unwrap_or_else(|refused| panic!("{refused:?}\n{}", broker.log_tail()))
}

/// Checks that `route` is exactly `broker`'s: one group, the master at its printed address,
/// the configured shard count, queue count and round-robin layout.
fn assert_route_is_the_brokers(route: &GetTopicRouteResponse, broker: &Broker) {
    assert_eq!(route.topic, TOPIC);
    assert_eq!(route.brokers.len(), 1, "{route:?}");
    let group = &route.brokers[0];
    assert_eq!(group.broker_name, broker.name());
    assert_eq!(group.members.len(), 1, "{group:?}");
    assert_eq!(group.members[0].broker_id, BrokerId::MASTER);
    assert_eq!(group.members[0].address, broker.address().to_string());
    assert_eq!(group.shard_count, TEST_SHARD_COUNT);
    assert_eq!(group.queue_count, QUEUES);
    assert_eq!(group.shard_layout, ShardLayout::RoundRobin);
    for queue in 0..QUEUES {
        let shard = group
            .shard_layout
            .shard_for(QueueId(queue), group.shard_count);
        assert_eq!(shard, Some(ShardId((queue % 2) as u16)), "queue {queue}");
    }
}

#[test]
fn broker_route_appears_on_the_name_server_after_registration() {
    let name_server = NameServer::start(&[]);
    let broker = start_broker(&[&name_server]);
    let route = wait_for_route(&name_server, &broker);
    assert_route_is_the_brokers(&route, &broker);
    // The address the name server hands out is one a client can use.
    let mut client = spillway_tests::WireClient::connect(
        route.brokers[0].members[0]
            .address
            .parse()
            .expect("a socket address"),
    );
    assert_eq!(client.queue_offsets(TOPIC, 3).unwrap(), (0, 0));
}

#[test]
fn both_name_servers_know_the_broker() {
    let first = NameServer::start(&[]);
    let second = NameServer::start(&[]);
    let broker = start_broker(&[&first, &second]);
    for name_server in [&first, &second] {
        let route = wait_for_route(name_server, &broker);
        assert_route_is_the_brokers(&route, &broker);
    }
}

#[test]
fn broker_route_disappears_after_the_timeout_once_the_broker_is_killed() {
    let timeout = BROKER_TIMEOUT_MS.to_string();
    let scan = SCAN_INTERVAL_MS.to_string();
    let name_server =
        NameServer::start(&["--broker-timeout-ms", &timeout, "--scan-interval-ms", &scan]);
    let mut broker = start_broker(&[&name_server]);
    wait_for_route(&name_server, &broker);

    // Heartbeats keep it over more than two timeouts.
    let mut client = name_server.connect();
    let kept_since = Instant::now();
    keep_checking(Duration::from_millis(2 * BROKER_TIMEOUT_MS + 500), || {
        let route = client.topic_route(TOPIC);
        assert!(
            route.is_ok(),
            "a heartbeating broker expired after {:?}: {route:?}\n{}",
            kept_since.elapsed(),
            broker.log_tail()
        );
    });

    broker.kill();
    let killed_at = Instant::now();
    name_server.wait_until_route_is_gone(TOPIC, "expiry of the killed broker");
    let waited = killed_at.elapsed();
    println!("the killed broker's route went {waited:?} after the kill");
    // Gone by expiry, not by anything the broker said: at least the timeout less one
    // heartbeat interval after the kill.
    let heartbeat = Duration::from_millis(spillway_tests::broker::TEST_HEARTBEAT_INTERVAL_MS);
    assert!(
        waited + heartbeat >= Duration::from_millis(BROKER_TIMEOUT_MS) - Duration::from_millis(50),
        "the route went {waited:?} after the kill, before the {BROKER_TIMEOUT_MS} ms timeout"
    );
}

#[test]
fn broker_route_disappears_at_once_on_sigterm() {
    // The default broker timeout is minutes: only an unregister removes the route quickly.
    let name_server = NameServer::start(&[]);
    let mut broker = start_broker(&[&name_server]);
    wait_for_route(&name_server, &broker);

    let status = broker.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "SIGTERM\n{}", broker.log_tail());
    let mut client = name_server.connect();
    let route = client.topic_route(TOPIC);
    assert!(
        route_is_gone(&route),
        "the route outlived a clean stop: {route:?}\n{}",
        broker.log_tail()
    );
}
