//! Tag filtering on pull: `a || c` returns the messages tagged `a` or `c`, in offset order,
//! `*` and the empty expression return everything, and a pull moves past messages it
//! filtered out, so a consumer never reads them again.

use spillway_tests::{BrokerConfigBuilder, NameServer};
use spillway_wire::message::PullStatus;

const TOPIC: &str = "tagged";
const TAGS: [&str; 3] = ["a", "b", "c"];
const ROUNDS: usize = 4;

#[test]
fn pull_with_tag_expression_returns_only_matching_tags() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, 2)
        .start();
    let mut client = broker.connect();

    // a b c a b c …, one produce per message, on both queues (both shards).
    let total = TAGS.len() * ROUNDS;
    for queue in 0..2 {
        for index in 0..total {
            let tag = TAGS[index % TAGS.len()];
            let body = format!("message {index} tagged {tag}");
            let offset = client
                .produce(TOPIC, queue, &[(tag, body.as_bytes())])
                .unwrap();
            assert_eq!(offset, index as u64);
        }
    }

    for queue in 0..2 {
        for expression in ["a || c", "a||c", "c || a"] {
            let (response, messages) = client.pull(TOPIC, queue, 0, 1024, 0, expression).unwrap();
            assert_eq!(response.status, PullStatus::Found, "{expression}");
            let expected: Vec<u64> = (0..total as u64).filter(|offset| offset % 3 != 1).collect();
            let offsets: Vec<u64> = messages.iter().map(|message| message.offset).collect();
            assert_eq!(offsets, expected, "{expression:?} on queue {queue}");
            for message in &messages {
                assert!(message.tag == "a" || message.tag == "c", "{message:?}");
                let body = format!("message {} tagged {}", message.offset, message.tag);
                assert_eq!(message.body, body.as_bytes());
            }
            assert_eq!(response.next_offset.0, total as u64, "{expression:?}");
        }

        let (_, only_b) = client.pull(TOPIC, queue, 0, 1024, 0, "b").unwrap();
        assert!(only_b.iter().all(|message| message.tag == "b"));
        assert_eq!(only_b.len(), ROUNDS);

        for everything in ["*", ""] {
            let (_, messages) = client.pull(TOPIC, queue, 0, 1024, 0, everything).unwrap();
            assert_eq!(messages.len(), total, "{everything:?}");
        }
    }
}

#[test]
fn pull_moves_past_messages_that_no_tag_matches() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, 1)
        .start();
    let mut client = broker.connect();
    for index in 0..5 {
        client
            .produce(TOPIC, 0, &[("b", format!("{index}").as_bytes())])
            .unwrap();
    }
    // Nothing matches: pulls find nothing but move on, until the end of the queue.
    let mut next = 0;
    let mut pulls = 0;
    while next < 5 {
        let (response, messages) = client.pull(TOPIC, 0, next, 1024, 0, "a").unwrap();
        assert!(messages.is_empty(), "{messages:?}");
        assert_eq!(response.status, PullStatus::Found, "{response:?}");
        assert!(response.next_offset.0 > next, "no progress: {response:?}");
        next = response.next_offset.0;
        pulls += 1;
        assert!(pulls <= 5, "more pulls than messages");
    }
    assert_eq!(next, 5);
    // A matching message after them is found from where the filtered pulls stopped.
    let offset = client.produce(TOPIC, 0, &[("a", b"match")]).unwrap();
    assert_eq!(offset, 5);
    let (_, messages) = client.pull(TOPIC, 0, next, 1024, 0, "a").unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, b"match");
}
