//! Long polling: a pull with nothing to read waits up to its `max_wait_ms`, answers as soon as
//! a message arrives (on either shard, from another connection), answers "no new messages"
//! at its deadline otherwise, and never holds up the other requests on its connection.

use std::time::{Duration, Instant};

use spillway_tests::wire_client::{decode_response, pull_request, Received};
use spillway_tests::{BrokerConfigBuilder, NameServer};
use spillway_wire::message::{
    FlushExpectation, ProduceRequest, ProduceResponse, PullRequest, PullResponse, PullStatus,
};
use spillway_wire::QueueId;

const TOPIC: &str = "events";
const QUEUES: u32 = 2;
/// The long polls' wait: far longer than anything in these tests should take.
const LONG_WAIT_MS: u32 = 20_000;
/// How long a test watches a held pull to see that it is really held.
const HELD_FOR: Duration = Duration::from_millis(500);
/// A held pull must answer this soon after the message it waits for is acknowledged: well
/// under its [`LONG_WAIT_MS`].
const PROMPT: Duration = Duration::from_secs(10);

fn start() -> (NameServer, spillway_tests::Broker) {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, QUEUES)
        .start();
    (name_server, broker)
}

#[test]
fn pull_waits_until_message_arrives() {
    let (_name_server, broker) = start();
    let mut waiter = broker.connect();
    let mut producer = broker.connect();

    // One held pull per queue, i.e. per shard, both on one connection: whichever shard the
    // connection landed on, one of them waits for a queue of the other shard.
    let pulls: Vec<(u32, PullRequest)> = (0..QUEUES)
        .map(|queue| (queue, pull_request(TOPIC, queue, 0, 16, LONG_WAIT_MS, "")))
        .collect();
    let request_ids: Vec<_> = pulls
        .iter()
        .map(|(_, request)| waiter.send_request(request, &[]).unwrap())
        .collect();
    match waiter.receive_within(HELD_FOR) {
        Received::TimedOut => {}
        other => panic!("a pull of an empty queue answered at once: {other:?}"),
    }

    // Queue 1 first, then queue 0: each pull answers with its own message, promptly.
    for (index, (queue, request)) in pulls.iter().enumerate().rev() {
        let body = format!("the message for queue {queue}");
        let offset = producer
            .produce(TOPIC, *queue, &[("", body.as_bytes())])
            .unwrap();
        assert_eq!(offset, 0);
        let produced_at = Instant::now();
        let frame = waiter.response(request_ids[index]).unwrap();
        let waited = produced_at.elapsed();
        let (response, payload) = decode_response::<PullRequest, PullResponse>(&frame)
            .unwrap_or_else(|refused| {
                panic!("pull of queue {queue}: {refused:?}\n{}", broker.log_tail())
            });
        let (response, messages) =
            spillway_tests::wire_client::parse_pull(request, response, &payload);
        assert!(
            waited < PROMPT,
            "the pull of queue {queue} answered {waited:?} after the produce"
        );
        assert_eq!(response.status, PullStatus::Found, "{response:?}");
        assert_eq!(messages.len(), 1, "{response:?}");
        assert_eq!(messages[0].body, body.as_bytes());
        assert_eq!(messages[0].offset, 0);
        assert_eq!(response.next_offset.0, 1);
        println!("queue {queue}: the held pull answered {waited:?} after the produce");
    }
}

#[test]
fn pull_answers_no_new_messages_at_its_deadline() {
    let (_name_server, broker) = start();
    let mut client = broker.connect();
    for queue in 0..QUEUES {
        let started = Instant::now();
        let (response, messages) = client.pull(TOPIC, queue, 0, 16, 500, "").unwrap();
        let waited = started.elapsed();
        assert_eq!(response.status, PullStatus::NoNewMessages, "{response:?}");
        assert!(messages.is_empty());
        assert_eq!(response.next_offset.0, 0);
        // Timers may round, but a pull must not give up long before its wait.
        assert!(
            waited >= Duration::from_millis(400),
            "queue {queue}: answered after {waited:?} of a 500 ms wait"
        );
        assert!(waited < PROMPT, "queue {queue}: answered after {waited:?}");
    }
}

#[test]
fn long_poll_does_not_block_a_produce_on_the_same_connection() {
    let (_name_server, broker) = start();
    let mut client = broker.connect();

    let pull = pull_request(TOPIC, 1, 0, 16, LONG_WAIT_MS, "");
    let pull_id = client.send_request(&pull, &[]).unwrap();
    let sent_at = Instant::now();
    // A produce to the other queue, behind the held pull on the same connection.
    let batch = spillway_tests::encode_batch(TOPIC, &[("", b"not what the pull waits for")]);
    let produce = ProduceRequest::single("p", TOPIC, QueueId(0), 1, &batch, FlushExpectation::Sync);
    let produce_id = client.send_request(&produce, &batch).unwrap();

    let first = client.read_frame().expect("a response");
    assert_eq!(
        first.request_id(),
        produce_id,
        "the produce must be answered while the pull is held: {first:?}"
    );
    assert!(sent_at.elapsed() < PROMPT, "{:?}", sent_at.elapsed());
    let (response, _) = decode_response::<ProduceRequest, ProduceResponse>(&first).unwrap();
    assert_eq!(response.parts[0].error_code, 0, "{response:?}");

    // Now feed the held pull from the same connection: both answers come, in any order.
    let offset = client
        .produce(TOPIC, 1, &[("", b"what the pull waits for")])
        .unwrap();
    assert_eq!(offset, 0);
    let frame = client.response(pull_id).unwrap();
    let (response, payload) = decode_response::<PullRequest, PullResponse>(&frame).unwrap();
    let (response, messages) = spillway_tests::wire_client::parse_pull(&pull, response, &payload);
    assert_eq!(response.status, PullStatus::Found);
    assert_eq!(messages[0].body, b"what the pull waits for");
    assert!(sent_at.elapsed() < PROMPT, "{:?}", sent_at.elapsed());
}
