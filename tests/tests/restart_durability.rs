//! Restarts: after a clean stop (SIGTERM, exit status 0) and after SIGKILL, a broker on the
//! same config and data still has every acknowledged message (sync flush) and every
//! offset whose commit was acknowledged (`CommitConsumerOffset`); a clean stop also keeps an
//! offset committed with a pull's `commit_offset`.

use spillway_tests::wire_client::pull_request;
use spillway_tests::{
    poll_until, Broker, BrokerConfigBuilder, Flush, NameServer, WireClient, DEADLINE,
};
use spillway_wire::QueueOffset;

const TOPIC: &str = "ledger";
const QUEUES: u32 = 4;
const GROUP: &str = "billing";
const NEVER_COMMITTED_GROUP: &str = "auditors";

/// What the broker acknowledged: messages per queue, and the group's offsets.
#[derive(Debug, Default)]
struct Acknowledged {
    bodies: Vec<Vec<Vec<u8>>>,
    offsets: Vec<Option<u64>>,
}

fn start() -> (NameServer, Broker) {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .flush(Flush::Sync)
        .topic(TOPIC, QUEUES)
        .start();
    (name_server, broker)
}

/// Produces `count` more messages to every queue and checks each lands at the next offset.
fn produce(client: &mut WireClient, acknowledged: &mut Acknowledged, count: usize) {
    acknowledged.bodies.resize(QUEUES as usize, Vec::new());
    for queue in 0..QUEUES {
        let stored = &mut acknowledged.bodies[queue as usize];
        for _ in 0..count {
            let body = format!("queue {queue} message {}", stored.len()).into_bytes();
            let offset = client.produce(TOPIC, queue, &[("", &body)]).unwrap();
            assert_eq!(offset, stored.len() as u64, "queue {queue}");
            stored.push(body);
        }
    }
}

/// How [`commit`] commits queue 2's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue2Commit {
    /// With a pull's `commit_offset`. Such a commit is not acknowledged by itself (the pull
    /// answers whether it has been stored yet), so it is only expected to survive a clean
    /// stop, once a query shows it.
    ByPull,
    /// With a commit request, like queues 0 and 1.
    ByRequest,
}

/// Commits offsets for [`GROUP`]: queues 0 and 1 by commit request, queue 2 as `queue_2`
/// says, queue 3 never. `shift` moves the values so a later round differs.
fn commit(
    client: &mut WireClient,
    acknowledged: &mut Acknowledged,
    shift: u64,
    queue_2: Queue2Commit,
) {
    acknowledged.offsets = vec![None; QUEUES as usize];
    for (queue, offset) in [(0u32, 3 + shift), (1, 5 + shift)] {
        client.commit_offset(GROUP, TOPIC, queue, offset).unwrap();
        acknowledged.offsets[queue as usize] = Some(offset);
    }
    let offset = 7 + shift;
    match queue_2 {
        Queue2Commit::ByRequest => client.commit_offset(GROUP, TOPIC, 2, offset).unwrap(),
        Queue2Commit::ByPull => {
            let mut pull = pull_request(TOPIC, 2, offset, 1, 0, "");
            pull.consumer_group = GROUP.to_owned();
            pull.commit_offset = Some(QueueOffset(offset));
            client.pull_with(&pull).unwrap();
            poll_until("the pull's offset commit", DEADLINE, || {
                (client.query_offset(GROUP, TOPIC, 2).unwrap() == Some(offset)).then_some(())
            });
        }
    }
    acknowledged.offsets[2] = Some(offset);
}

fn check(broker: &Broker, acknowledged: &Acknowledged, after: &str) {
    let mut client = broker.connect();
    for queue in 0..QUEUES {
        let expected = &acknowledged.bodies[queue as usize];
        let (min_offset, max_offset) = client.queue_offsets(TOPIC, queue).unwrap();
        assert_eq!(
            (min_offset, max_offset),
            (0, expected.len() as u64),
            "offsets of queue {queue} after {after}\n{}",
            broker.log_tail()
        );
        let messages = client.pull_to_end(TOPIC, queue, 0);
        let bodies: Vec<Vec<u8>> = messages.into_iter().map(|message| message.body).collect();
        assert_eq!(&bodies, expected, "queue {queue} after {after}");

        let committed = client.query_offset(GROUP, TOPIC, queue).unwrap();
        assert_eq!(
            committed, acknowledged.offsets[queue as usize],
            "committed offset of queue {queue} after {after}"
        );
        assert_eq!(
            client
                .query_offset(NEVER_COMMITTED_GROUP, TOPIC, queue)
                .unwrap(),
            None,
            "a group that never committed, after {after}"
        );
    }
}

#[test]
fn committed_offsets_and_messages_survive_a_sigterm_restart() {
    let (_name_server, mut broker) = start();
    let mut acknowledged = Acknowledged::default();
    {
        let mut client = broker.connect();
        produce(&mut client, &mut acknowledged, 10);
        commit(&mut client, &mut acknowledged, 0, Queue2Commit::ByPull);
    }
    check(&broker, &acknowledged, "the first run");

    let status = broker.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "SIGTERM\n{}", broker.log_tail());
    broker.restart();
    check(&broker, &acknowledged, "a SIGTERM restart");

    // The restarted broker goes on from where it was.
    let mut client = broker.connect();
    produce(&mut client, &mut acknowledged, 3);
    commit(&mut client, &mut acknowledged, 2, Queue2Commit::ByPull);
    check(&broker, &acknowledged, "producing after the restart");
}

#[test]
fn committed_offsets_and_messages_survive_a_sigkill_restart() {
    let (_name_server, mut broker) = start();
    let mut acknowledged = Acknowledged::default();
    {
        let mut client = broker.connect();
        produce(&mut client, &mut acknowledged, 10);
        commit(&mut client, &mut acknowledged, 0, Queue2Commit::ByRequest);
    }
    broker.kill();
    broker.restart();
    check(&broker, &acknowledged, "a SIGKILL restart");

    // Again, with the last commits and messages right before the kill.
    {
        let mut client = broker.connect();
        commit(&mut client, &mut acknowledged, 1, Queue2Commit::ByRequest);
        produce(&mut client, &mut acknowledged, 5);
        client.commit_offset(GROUP, TOPIC, 3, 12).unwrap();
        acknowledged.offsets[3] = Some(12);
    }
    broker.kill();
    broker.restart();
    check(&broker, &acknowledged, "a second SIGKILL restart");
}
