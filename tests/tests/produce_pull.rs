//! Produce, then pull: every acknowledged message comes back from its queue, at the offset
//! it was acknowledged with, in the order each producer sent it, whichever shard the
//! producer's connection and the queue landed on.

use std::collections::HashSet;
use std::thread;

use spillway_tests::{BrokerConfigBuilder, NameServer, ParsedMessage};

const TOPIC: &str = "orders";
/// Queues of the topic: with two shards, queues 0 and 2 live on shard 0, 1 and 3 on shard 1.
const QUEUES: u32 = 4;
/// Connections, each its own producer: the kernel spreads them over both shards' listeners.
const CONNECTIONS: usize = 8;
/// Batches each connection sends to each queue.
const BATCHES: usize = 5;
/// Messages per batch.
const BATCH_MESSAGES: usize = 3;

/// What a producer sent and how the broker acknowledged it.
#[derive(Debug)]
struct Acknowledged {
    connection: usize,
    queue: u32,
    batch: usize,
    first_offset: u64,
}

fn body(connection: usize, queue: u32, batch: usize, message: usize) -> Vec<u8> {
    format!("connection {connection} queue {queue} batch {batch} message {message}").into_bytes()
}

#[test]
fn produced_messages_pull_back_in_order_per_queue_from_every_connection_and_shard() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, QUEUES)
        .start();

    let acknowledged: Vec<Acknowledged> = thread::scope(|scope| {
        let producers: Vec<_> = (0..CONNECTIONS)
            .map(|connection| {
                let mut client = broker.connect();
                scope.spawn(move || {
                    let tag = format!("connection-{connection}");
                    let mut acknowledged = Vec::new();
                    // Round after round, one batch to every queue: queues of both shards
                    // interleave on this connection.
                    for batch in 0..BATCHES {
                        for queue in 0..QUEUES {
                            let bodies: Vec<Vec<u8>> = (0..BATCH_MESSAGES)
                                .map(|message| body(connection, queue, batch, message))
                                .collect();
                            let messages: Vec<(&str, &[u8])> = bodies
                                .iter()
                                .map(|body| (tag.as_str(), body.as_slice()))
                                .collect();
                            let first_offset = client
                                .produce(TOPIC, queue, &messages)
                                .unwrap_or_else(|code| {
                                    panic!("connection {connection} queue {queue}: {code:?}")
                                });
                            acknowledged.push(Acknowledged {
                                connection,
                                queue,
                                batch,
                                first_offset,
                            });
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        producers
            .into_iter()
            .flat_map(|producer| producer.join().expect("a producer thread"))
            .collect()
    });

    let per_queue = CONNECTIONS * BATCHES * BATCH_MESSAGES;
    let mut consumer = broker.connect();
    let queues: Vec<Vec<ParsedMessage>> = (0..QUEUES)
        .map(|queue| {
            let (min_offset, max_offset) = consumer.queue_offsets(TOPIC, queue).unwrap();
            assert_eq!(
                (min_offset, max_offset),
                (0, per_queue as u64),
                "offsets of queue {queue}\n{}",
                broker.log_tail()
            );
            consumer.pull_to_end(TOPIC, queue, 0)
        })
        .collect();

    for (queue, messages) in queues.iter().enumerate() {
        assert_eq!(messages.len(), per_queue, "messages in queue {queue}");
        // Offsets are dense from 0, every message is in its own queue, none twice.
        let mut bodies = HashSet::new();
        for (index, message) in messages.iter().enumerate() {
            assert_eq!(message.offset, index as u64, "queue {queue}");
            assert_eq!(message.queue_id, queue as u32);
            assert_eq!(message.topic, TOPIC);
            assert!(
                bodies.insert(message.body.clone()),
                "queue {queue}: a body twice at {}",
                message.offset
            );
        }
    }

    // Each acknowledged batch is where its acknowledgement says, whole and in order.
    for ack in &acknowledged {
        let queue = &queues[ack.queue as usize];
        for message in 0..BATCH_MESSAGES {
            let offset = ack.first_offset as usize + message;
            let stored = &queue[offset];
            assert_eq!(
                stored.body,
                body(ack.connection, ack.queue, ack.batch, message),
                "queue {} offset {offset}: {}",
                ack.queue,
                String::from_utf8_lossy(&stored.body)
            );
            assert_eq!(stored.tag, format!("connection-{}", ack.connection));
        }
    }
    // A connection's later batches to a queue have later offsets.
    for connection in 0..CONNECTIONS {
        for queue in 0..QUEUES {
            let offsets: Vec<u64> = acknowledged
                .iter()
                .filter(|ack| ack.connection == connection && ack.queue == queue)
                .map(|ack| ack.first_offset)
                .collect();
            assert_eq!(offsets.len(), BATCHES);
            assert!(
                offsets.windows(2).all(|pair| pair[0] < pair[1]),
                "connection {connection} queue {queue}: offsets {offsets:?} out of send order"
            );
        }
    }
}
