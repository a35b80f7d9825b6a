//! Topic administration on a running broker: a created topic is served at once on both
//! shards, listed, published to the name server and kept over a restart; creating it twice
//! is refused; a deleted topic is neither served, listed nor routed, and a topic created
//! again under its name starts empty at offset 0, over a restart too; with
//! `auto_create_topics` a produce to an unknown topic creates it.

use spillway_tests::{route_is_gone, Broker, BrokerConfigBuilder, NameServer, WireClient};
use spillway_wire::message::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    ListTopicsRequest, ListTopicsResponse, ShardLayout, TopicConfig,
};
use spillway_wire::ErrorCode;

fn create(client: &mut WireClient, topic: &str, queue_count: u32) -> Result<(), ErrorCode> {
    let request = CreateTopicRequest {
        config: TopicConfig {
            topic: topic.into(),
            queue_count,
            shard_layout: ShardLayout::RoundRobin,
        },
    };
    client
        .call::<_, CreateTopicResponse>(&request, &[])
        .map(drop)
        .map_err(|(code, _)| code)
}

fn listed(client: &mut WireClient) -> Vec<(String, u32)> {
    let (response, _) = client
        .call::<_, ListTopicsResponse>(&ListTopicsRequest {}, &[])
        .unwrap();
    let mut topics: Vec<(String, u32)> = response
        .topics
        .into_iter()
        .map(|topic| (topic.topic, topic.queue_count))
        .collect();
    topics.sort();
    topics
}

/// Produces one message to every queue of `topic` and reads each back.
fn assert_serves(client: &mut WireClient, topic: &str, queue_count: u32, broker: &Broker) {
    for queue in 0..queue_count {
        let body = format!("{topic} {queue}");
        let offset = client
            .produce(topic, queue, &[("", body.as_bytes())])
            .unwrap_or_else(|code| panic!("{topic}/{queue}: {code:?}\n{}", broker.log_tail()));
        let (_, messages) = client.pull(topic, queue, offset, 1, 0, "").unwrap();
        assert_eq!(messages[0].body, body.as_bytes(), "{topic}/{queue}");
    }
}

#[test]
fn created_topic_is_served_listed_routed_and_kept_over_a_restart() {
    let name_server = NameServer::start(&[]);
    let mut broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic("configured", 2)
        .start();
    let mut client = broker.connect();

    create(&mut client, "created", 4).unwrap();
    assert_eq!(
        create(&mut client, "created", 4),
        Err(ErrorCode::TopicExists)
    );
    assert_eq!(
        create(&mut client, "configured", 2),
        Err(ErrorCode::TopicExists)
    );
    assert_eq!(
        create(&mut client, "no queues", 0),
        Err(ErrorCode::InvalidArgument)
    );
    assert_serves(&mut client, "created", 4, &broker);
    assert_eq!(
        listed(&mut client),
        [("configured".to_owned(), 2), ("created".to_owned(), 4)]
    );
    let route = name_server
        .wait_for_route("created", "the created topic's route", Result::is_ok)
        .unwrap();
    assert_eq!(route.brokers[0].queue_count, 4);

    broker.restart();
    let mut client = broker.connect();
    assert_eq!(
        listed(&mut client),
        [("configured".to_owned(), 2), ("created".to_owned(), 4)]
    );
    assert_eq!(client.queue_offsets("created", 3).unwrap(), (0, 1));
    assert_serves(&mut client, "created", 4, &broker);
}

#[test]
fn deleted_topic_is_no_longer_served_listed_or_routed() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic("kept", 1)
        .start();
    let mut client = broker.connect();
    create(&mut client, "doomed", 2).unwrap();
    assert_serves(&mut client, "doomed", 2, &broker);
    name_server
        .wait_for_route("doomed", "the doomed topic's route", Result::is_ok)
        .unwrap();

    client
        .call::<_, DeleteTopicResponse>(
            &DeleteTopicRequest {
                topic: "doomed".into(),
            },
            &[],
        )
        .unwrap();
    assert_eq!(
        client.produce("doomed", 0, &[("", b"late")]),
        Err(ErrorCode::TopicNotFound)
    );
    assert_eq!(
        client.pull("doomed", 1, 0, 1, 0, "").unwrap_err().0,
        ErrorCode::TopicNotFound
    );
    assert_eq!(listed(&mut client), [("kept".to_owned(), 1)]);
    name_server.wait_until_route_is_gone("doomed", "the deleted topic's route to go");
    assert!(!route_is_gone(&name_server.connect().topic_route("kept")));
    let refused = client
        .call::<_, DeleteTopicResponse>(
            &DeleteTopicRequest {
                topic: "doomed".into(),
            },
            &[],
        )
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::TopicNotFound, "{}", refused.1);
    assert_serves(&mut client, "kept", 1, &broker);
}

#[test]
fn a_topic_created_again_after_deletion_starts_empty_at_offset_zero() {
    let name_server = NameServer::start(&[]);
    let mut broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic("kept", 1)
        .start();
    let mut client = broker.connect();
    create(&mut client, "reborn", 2).unwrap();
    // Queue 0 on shard 0, queue 1 on shard 1: both shards' stores take part.
    for queue in 0..2 {
        for n in 0..20 {
            let body = format!("old {queue} {n}");
            assert_eq!(
                client.produce("reborn", queue, &[("", body.as_bytes())]),
                Ok(n)
            );
        }
    }
    client
        .call::<_, DeleteTopicResponse>(
            &DeleteTopicRequest {
                topic: "reborn".into(),
            },
            &[],
        )
        .unwrap();
    create(&mut client, "reborn", 2).unwrap();
    for queue in 0..2 {
        assert_eq!(client.queue_offsets("reborn", queue), Ok((0, 0)));
        let body = format!("new {queue}");
        assert_eq!(
            client.produce("reborn", queue, &[("", body.as_bytes())]),
            Ok(0),
            "{}",
            broker.log_tail()
        );
    }
    let check = |client: &mut WireClient| {
        for queue in 0..2 {
            assert_eq!(client.queue_offsets("reborn", queue), Ok((0, 1)));
            let (_, messages) = client.pull("reborn", queue, 0, 32, 0, "").unwrap();
            let bodies: Vec<&[u8]> = messages.iter().map(|message| &message.body[..]).collect();
            assert_eq!(bodies, [format!("new {queue}").as_bytes()], "queue {queue}");
        }
        assert_eq!(client.queue_offsets("kept", 0), Ok((0, 0)));
    };
    check(&mut client);
    broker.restart();
    let mut client = broker.connect();
    check(&mut client);
}

#[test]
fn a_topic_removed_from_the_config_file_loses_its_messages_at_the_next_start() {
    let name_server = NameServer::start(&[]);
    let config = |with_dropped: bool| {
        let config = BrokerConfigBuilder::new(&[name_server.address()]).topic("kept", 1);
        if with_dropped {
            config.topic("dropped", 2)
        } else {
            config
        }
    };
    let mut broker = config(true).start();
    let mut client = broker.connect();
    for queue in 0..2 {
        for n in 0..10 {
            assert_eq!(client.produce("dropped", queue, &[("", b"old")]), Ok(n));
        }
    }
    assert_eq!(client.produce("kept", 0, &[("", b"kept")]), Ok(0));
    client.commit_offset("readers", "dropped", 1, 7).unwrap();
    client.commit_offset("readers", "kept", 0, 1).unwrap();

    broker.rewrite_config(config(false));
    broker.restart();
    let mut client = broker.connect();
    assert_eq!(
        client.queue_offsets("dropped", 0).unwrap_err().0,
        ErrorCode::TopicNotFound
    );

    broker.rewrite_config(config(true));
    broker.restart();
    let mut client = broker.connect();
    for queue in 0..2 {
        assert_eq!(
            client.queue_offsets("dropped", queue),
            Ok((0, 0)),
            "{}",
            broker.log_tail()
        );
        assert_eq!(client.produce("dropped", queue, &[("", b"new")]), Ok(0));
    }
    assert_eq!(client.queue_offsets("kept", 0), Ok((0, 1)));
    // The group's offset in the old topic went with it; the other topic keeps its own.
    assert_eq!(client.query_offset("readers", "dropped", 1), Ok(None));
    assert_eq!(client.query_offset("readers", "kept", 0), Ok(Some(1)));
}

#[test]
fn produce_to_an_unknown_topic_creates_it_when_auto_create_is_on() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .auto_create_topics(true)
        .set("auto_create_queues", 3)
        .start();
    let mut client = broker.connect();
    assert_eq!(client.produce("appeared", 2, &[("", b"first")]), Ok(0));
    assert_eq!(listed(&mut client), [("appeared".to_owned(), 3)]);
    assert_serves(&mut client, "appeared", 3, &broker);
    assert_eq!(
        client.produce("appeared", 3, &[("", b"no such queue")]),
        Err(ErrorCode::QueueNotFound)
    );
    name_server
        .wait_for_route("appeared", "the auto-created topic's route", Result::is_ok)
        .unwrap();
}
