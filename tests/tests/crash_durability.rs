//! Crash during produce: while several producers send with sync flush, the broker is killed
//! with SIGKILL. After a restart every acknowledged message is readable at the offset it was
//! acknowledged with, with the body it was sent with; messages in flight at the kill may or
//! may not be there, but nothing is there twice, out of a producer's order, or damaged.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use spillway_tests::{poll_until, BrokerConfigBuilder, Flush, NameServer, DEADLINE};
use spillway_wire::message::FlushExpectation;

const TOPIC: &str = "payments";
const QUEUES: u32 = 4;
const PRODUCERS: usize = 4;
/// Acknowledged messages (all producers) before the kill: with bodies of 4 KiB on average,
/// about 24 MiB, so each shard's log crosses from its first 8 MiB segment into the next.
const ACKNOWLEDGED_BEFORE_KILL: usize = 6000;
/// Bodies are padded to a length below this.
const MAX_PADDING_BYTES: usize = 8192;
/// Longest time producers run before the kill, however many were acknowledged by then.
const PRODUCE_FOR_AT_MOST: Duration = Duration::from_secs(8);

/// A message body: who sent it and its sequence number, padded to a length derived from
/// them, so the whole body can be checked from its first line.
fn body(producer: usize, sequence: u64) -> Vec<u8> {
    let mut body = format!("producer {producer} sequence {sequence}\n").into_bytes();
    let padding = (sequence as usize * 4099 + producer * 11) % MAX_PADDING_BYTES;
    body.extend((0..padding).map(|index| b'a' + ((index + producer) % 26) as u8));
    body
}

/// Reads `producer` and `sequence` back from a body (and checks the padding).
fn parse_body(stored: &[u8]) -> Option<(usize, u64)> {
    let line_end = stored.iter().position(|&byte| byte == b'\n')?;
    let line = std::str::from_utf8(&stored[..line_end]).ok()?;
    let mut words = line.split(' ');
    let producer = match (words.next(), words.next()) {
        (Some("producer"), Some(number)) => number.parse().ok()?,
        _ => return None,
    };
    let sequence = match (words.next(), words.next()) {
        (Some("sequence"), Some(number)) => number.parse().ok()?,
        _ => return None,
    };
    (body(producer, sequence) == stored).then_some((producer, sequence))
}

/// One acknowledged batch.
#[derive(Debug)]
struct Acknowledged {
    producer: usize,
    queue: u32,
    first_offset: u64,
    sequences: Vec<u64>,
}

#[test]
fn every_acknowledged_message_survives_kill_9_during_sync_produce() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let name_server = NameServer::start(&[]);
    let mut broker = BrokerConfigBuilder::new(&[name_server.address()])
        .flush(Flush::Sync)
        .topic(TOPIC, QUEUES)
        .start();

    let acknowledged_count = AtomicUsize::new(0);
    let (acknowledged, killed_at) = thread::scope(|scope| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|producer| {
                let mut client = broker.connect();
                let acknowledged_count = &acknowledged_count;
                scope.spawn(move || {
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ producer as u64);
                    let mut acknowledged = Vec::new();
                    let mut sequence = 0u64;
                    loop {
                        let queue = rng.gen_range(0..QUEUES);
                        let count = rng.gen_range(1..=3u64);
                        let sequences: Vec<u64> = (sequence..sequence + count).collect();
                        sequence += count;
                        let bodies: Vec<Vec<u8>> =
                            sequences.iter().map(|&s| body(producer, s)).collect();
                        let messages: Vec<(&str, &[u8])> =
                            bodies.iter().map(|body| ("", body.as_slice())).collect();
                        match client.try_produce(TOPIC, queue, &messages, FlushExpectation::Sync) {
                            Ok(Ok(first_offset)) => {
                                acknowledged.push(Acknowledged {
                                    producer,
                                    queue,
                                    first_offset,
                                    sequences,
                                });
                                acknowledged_count.fetch_add(messages.len(), Ordering::Relaxed);
                            }
                            Ok(Err(code)) => {
                                panic!("producer {producer}: produce refused with {code:?}")
                            }
                            // The broker is gone: this producer is done.
                            Err(_) => return acknowledged,
                        }
                    }
                })
            })
            .collect();

        let started = Instant::now();
        poll_until("enough acknowledged messages", DEADLINE, || {
            (acknowledged_count.load(Ordering::Relaxed) >= ACKNOWLEDGED_BEFORE_KILL
                || started.elapsed() >= PRODUCE_FOR_AT_MOST)
                .then_some(())
        });
        broker.kill();
        let killed_at = acknowledged_count.load(Ordering::Relaxed);
        let acknowledged: Vec<Acknowledged> = producers
            .into_iter()
            .flat_map(|producer| producer.join().expect("a producer thread"))
            .collect();
        (acknowledged, killed_at)
    });
    let total: usize = acknowledged.iter().map(|ack| ack.sequences.len()).sum();
    println!("{total} messages acknowledged ({killed_at} when the kill was sent)");
    for producer in 0..PRODUCERS {
        assert!(
            acknowledged.iter().any(|ack| ack.producer == producer),
            "producer {producer} got no acknowledgement before the kill\n{}",
            broker.log_tail()
        );
    }

    broker.restart();
    let mut client = broker.connect();
    let stored: Vec<Vec<Vec<u8>>> = (0..QUEUES)
        .map(|queue| {
            let messages = client.pull_to_end(TOPIC, queue, 0);
            for (index, message) in messages.iter().enumerate() {
                assert_eq!(
                    message.offset, index as u64,
                    "queue {queue}: offsets are dense"
                );
            }
            messages.into_iter().map(|message| message.body).collect()
        })
        .collect();

    // Every acknowledged message, at its acknowledged offset.
    for ack in &acknowledged {
        let queue = &stored[ack.queue as usize];
        for (index, &sequence) in ack.sequences.iter().enumerate() {
            let offset = ack.first_offset as usize + index;
            let found = queue.get(offset).unwrap_or_else(|| {
                panic!(
                    "seed {seed}: producer {} sequence {sequence} was acknowledged at queue {} \
                     offset {offset}, but the queue ends at {}\n{}",
                    ack.producer,
                    ack.queue,
                    queue.len(),
                    broker.log_tail()
                )
            });
            assert!(
                *found == body(ack.producer, sequence),
                "seed {seed}: queue {} offset {offset} holds {:?}, not producer {} sequence \
                 {sequence}",
                ack.queue,
                String::from_utf8_lossy(&found[..found.len().min(40)]),
                ack.producer
            );
        }
    }

    // Whatever else is there is whole, once, and in each producer's order.
    let mut seen = HashSet::new();
    for (queue, bodies) in stored.iter().enumerate() {
        let mut last_sequence = [None; PRODUCERS];
        for (offset, stored_body) in bodies.iter().enumerate() {
            let (producer, sequence) = parse_body(stored_body).unwrap_or_else(|| {
                panic!("seed {seed}: queue {queue} offset {offset} holds a damaged body")
            });
            assert!(
                seen.insert((producer, sequence)),
                "seed {seed}: producer {producer} sequence {sequence} stored twice"
            );
            assert!(
                last_sequence[producer] < Some(sequence),
                "seed {seed}: queue {queue}: producer {producer}'s sequence {sequence} after \
                 {:?}",
                last_sequence[producer]
            );
            last_sequence[producer] = Some(sequence);
        }
    }
    assert!(
        seen.len() >= total,
        "{} stored, {total} acknowledged",
        seen.len()
    );
}
