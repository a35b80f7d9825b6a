//! Searching a queue by time: the first offset stored at or after a timestamp, the queue's
//! start for a time before everything, its end for a time after everything.

use spillway_tests::records::now_ms;
use spillway_tests::{poll_until, BrokerConfigBuilder, NameServer, WireClient, DEADLINE};
use spillway_wire::message::{SearchOffsetByTimestampRequest, SearchOffsetByTimestampResponse};
use spillway_wire::QueueId;

const TOPIC: &str = "history";

fn search(client: &mut WireClient, queue: u32, timestamp_ms: i64) -> u64 {
    let request = SearchOffsetByTimestampRequest {
        topic: TOPIC.into(),
        queue_id: QueueId(queue),
        timestamp_ms,
    };
    let (response, _) = client
        .call::<_, SearchOffsetByTimestampResponse>(&request, &[])
        .unwrap();
    response.offset.0
}

#[test]
fn search_by_timestamp_finds_the_first_offset_stored_at_or_after_it() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, 2)
        .start();
    let mut client = broker.connect();

    for queue in 0..2 {
        assert_eq!(
            search(&mut client, queue, now_ms()),
            0,
            "empty queue {queue}"
        );
        // Three messages, each stored in a later millisecond than the one before.
        let mut store_times = Vec::new();
        for index in 0..3u64 {
            if let Some(&previous) = store_times.last() {
                poll_until("the clock to move on", DEADLINE, || {
                    (now_ms() > previous).then_some(())
                });
            }
            let offset = client
                .produce(TOPIC, queue, &[("", format!("{index}").as_bytes())])
                .unwrap();
            assert_eq!(offset, index);
            let (_, messages) = client.pull(TOPIC, queue, offset, 1, 0, "").unwrap();
            store_times.push(messages[0].store_timestamp_ms);
        }
        assert!(
            store_times.windows(2).all(|pair| pair[0] < pair[1]),
            "store times {store_times:?}"
        );

        assert_eq!(search(&mut client, queue, 0), 0);
        for (offset, &stored_at) in store_times.iter().enumerate() {
            assert_eq!(
                search(&mut client, queue, stored_at),
                offset as u64,
                "queue {queue}, stored at {stored_at} ({store_times:?})"
            );
        }
        assert_eq!(search(&mut client, queue, store_times[0] + 1), 1);
        assert_eq!(search(&mut client, queue, store_times[2] + 1), 3);
        assert_eq!(search(&mut client, queue, i64::MAX), 3);
    }
}
