//! Administration against a real cluster: a topic created on every master of the cluster is
//! listed, routed and served; a consumer group's lag follows its commits; a deleted topic
//! is neither listed nor routed; the cluster layout comes from the name server; a client
//! that joins a consumer group is a member once it heartbeats.

mod common;

use std::sync::Arc;

use common::{client_config, start_cluster};
use spillway_client::{
    Admin, BrokerId, ClientError, ConsumeMode, ConsumerGroupMembership, ErrorCode, Message,
    Producer, ProducerConfig, PullConsumer, Subscription, TopicTarget,
};
use spillway_tests::{poll_until, DEADLINE};

#[test]
fn created_topic_is_listed_routed_served_and_deleted() {
    let (name_server, broker) = start_cluster("configured", 1);
    let config = client_config(&name_server);
    let admin = Admin::new(config.clone()).unwrap();
    let client = admin.client().clone();

    let clusters = admin.cluster_info().unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].cluster, "test");
    let group = &clusters[0].broker_groups[0];
    assert_eq!(group.broker_name, "broker-a");
    assert_eq!(group.members[0].broker_id, BrokerId::MASTER);
    assert_eq!(group.members[0].address, broker.address().to_string());

    let created = admin
        .create_topic(&TopicTarget::Cluster("test".into()), "payments", 3)
        .unwrap();
    assert_eq!(created, [broker.address().to_string()]);
    let again = admin
        .create_topic(
            &TopicTarget::Broker(broker.address().to_string()),
            "payments",
            3,
        )
        .unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::TopicExists), "{again}");
    let topics: Vec<(String, u32)> = admin
        .list_topics(&broker.address().to_string())
        .unwrap()
        .into_iter()
        .map(|topic| (topic.topic, topic.queue_count))
        .collect();
    assert_eq!(
        topics,
        [("configured".to_owned(), 1), ("payments".to_owned(), 3)]
    );
    let route = poll_until("the new topic's route", DEADLINE, || {
        client.refresh_topic_route("payments").ok()
    });
    assert_eq!(route.brokers[0].queue_count, 3);

    // Lag: 12 messages, 4 per queue; the group commits 1 on one queue and 4 on another.
    let producer = Producer::start_on(&client, ProducerConfig::new(config.clone())).unwrap();
    let topic: Arc<str> = Arc::from("payments");
    for index in 0..12 {
        producer
            .send(Message::new(topic.clone(), format!("payment {index}")))
            .unwrap();
    }
    let consumer = PullConsumer::with_client(&client, "ledger").unwrap();
    let queues = consumer.queues("payments").unwrap();
    assert_eq!(queues.len(), 3);
    let before = admin.consumer_lag("ledger", "payments").unwrap();
    assert_eq!(before.total, 12);
    assert!(before
        .queues
        .iter()
        .all(|queue| queue.committed.is_none() && queue.lag == 4));
    consumer.commit_offset(&queues[0], 1).unwrap();
    consumer.commit_offset(&queues[2], 4).unwrap();
    let after = admin.consumer_lag("ledger", "payments").unwrap();
    let lags: Vec<(Option<u64>, u64, u64)> = after
        .queues
        .iter()
        .map(|queue| (queue.committed, queue.max_offset, queue.lag))
        .collect();
    assert_eq!(lags, [(Some(1), 4, 3), (None, 4, 4), (Some(4), 4, 0)]);
    assert_eq!(after.total, 7);
    assert_eq!(admin.queue_offsets(&queues[1]).unwrap(), (0, 4));
    producer.close().unwrap();

    let deleted = admin
        .delete_topic(
            &TopicTarget::Broker(broker.address().to_string()),
            "payments",
        )
        .unwrap();
    assert_eq!(deleted.len(), 1);
    let topics: Vec<String> = admin
        .list_topics(&broker.address().to_string())
        .unwrap()
        .into_iter()
        .map(|topic| topic.topic)
        .collect();
    assert_eq!(topics, ["configured"]);
    poll_until("the deleted topic's route to go", DEADLINE, || {
        matches!(
            client.refresh_topic_route("payments"),
            Err(ClientError::TopicNotFound { .. })
        )
        .then_some(())
    });
    let unknown_cluster = admin.create_topic(&TopicTarget::Cluster("nope".into()), "x", 1);
    assert!(matches!(
        unknown_cluster,
        Err(ClientError::InvalidConfig { .. })
    ));
}

#[test]
fn client_joining_a_consumer_group_is_a_member_once_it_heartbeats() {
    let (name_server, broker) = start_cluster("orders", 2);
    let admin = Admin::new(client_config(&name_server)).unwrap();
    let client = admin.client();
    // Heartbeats go to the masters of the routes the client knows.
    client.topic_route("orders").unwrap();
    let address = broker.address().to_string();
    assert!(admin
        .consumer_group_members(&address, "billing")
        .unwrap()
        .is_empty());
    client.join_consumer_group(ConsumerGroupMembership {
        consumer_group: "billing".into(),
        consume_mode: ConsumeMode::Clustering,
        subscriptions: vec![Subscription {
            topic: "orders".into(),
            tag_expression: "*".into(),
        }],
    });
    client.send_heartbeats().unwrap();
    assert_eq!(
        admin.consumer_group_members(&address, "billing").unwrap(),
        [client.client_id().to_owned()]
    );
}
