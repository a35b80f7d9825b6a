//! Bad input to a broker: a byte stream that is not frames (noise, a length over the limit,
//! a checksum mismatch) gets a connection-error response and a closed connection; a valid
//! frame with an undecodable header or an unknown opcode gets a typed error for that request
//! and the connection goes on; unknown topics and queues get typed errors. After each, a
//! client connected all along still produces and pulls.

use spillway_tests::crafted::{self, expect_connection_error};
use spillway_tests::{Broker, BrokerConfigBuilder, NameServer, WireClient};
use spillway_wire::message::{
    FlushExpectation, ProducePart, ProduceRequest, ProduceResponse, PullStatus,
};
use spillway_wire::{ErrorCode, FrameKind, Opcode, QueueId, RequestId};

const TOPIC: &str = "orders";
const QUEUES: u32 = 2;

fn start() -> (NameServer, Broker) {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, QUEUES)
        .start();
    (name_server, broker)
}

/// The survivor, connected before the bad input, produces to every queue and reads it back.
fn assert_still_serves(survivor: &mut WireClient, broker: &Broker, after: &str) {
    for queue in 0..QUEUES {
        let body = format!("after {after}");
        let offset = survivor
            .produce(TOPIC, queue, &[("", body.as_bytes())])
            .unwrap_or_else(|code| {
                panic!("produce after {after}: {code:?}\n{}", broker.log_tail())
            });
        let (response, messages) = survivor.pull(TOPIC, queue, offset, 1, 0, "").unwrap();
        assert_eq!(response.status, PullStatus::Found, "after {after}");
        assert_eq!(messages[0].body, body.as_bytes(), "after {after}");
    }
    // And a new connection is served too.
    assert!(
        broker.connect().queue_offsets(TOPIC, 0).is_ok(),
        "after {after}"
    );
}

#[test]
fn random_bytes_get_a_connection_error_and_others_are_still_served() {
    let (_name_server, broker) = start();
    let mut survivor = broker.connect();
    let seed: u64 = rand::random();
    println!("noise seed {seed}");
    for length in [8, 512, 64 << 10] {
        expect_connection_error(
            broker.address(),
            &crafted::noise(seed, length),
            ErrorCode::BadFrame,
        );
        assert_still_serves(&mut survivor, &broker, &format!("{length} random bytes"));
    }
}

#[test]
fn oversize_length_gets_frame_too_large_before_anything_is_buffered() {
    let (_name_server, broker) = start();
    let mut survivor = broker.connect();
    // 1 GiB announced, 8 bytes sent: the broker judges by the prefix alone, and since it
    // read everything sent, its close is clean and the response arrives.
    let responses = expect_connection_error(
        broker.address(),
        &crafted::oversize_prefix(1 << 30),
        ErrorCode::FrameTooLarge,
    );
    assert_eq!(responses, 1, "the FrameTooLarge response was lost");
    assert_still_serves(&mut survivor, &broker, "an oversize length");
}

#[test]
fn corrupt_frame_checksum_gets_bad_frame_and_others_are_still_served() {
    let (_name_server, broker) = start();
    let mut survivor = broker.connect();
    let header =
        spillway_wire::header::header_bytes(&spillway_wire::message::GetQueueOffsetsRequest {
            topic: TOPIC.into(),
            queue_id: QueueId(0),
        })
        .unwrap();
    for flipped in ["the CRC", "a header byte"] {
        let mut frame = crafted::frame_bytes(
            FrameKind::Request,
            1,
            Opcode::GetQueueOffsets.as_u16(),
            &header,
            &[],
        );
        let at = if flipped == "the CRC" {
            crafted::CRC_OFFSET
        } else {
            spillway_wire::FIXED_BYTES + 2
        };
        frame[at] ^= 0x10;
        expect_connection_error(broker.address(), &frame, ErrorCode::BadFrame);
        assert_still_serves(
            &mut survivor,
            &broker,
            &format!("a flipped bit in {flipped}"),
        );
    }
}

#[test]
fn undecodable_header_gets_bad_header_and_the_connection_stays_usable() {
    let (_name_server, broker) = start();
    let mut survivor = broker.connect();
    let mut client = broker.connect();
    // Valid frames (checksum and all) whose headers cannot be what their opcode says.
    let mut request_id = 100;
    for opcode in [Opcode::Pull, Opcode::Produce, Opcode::GetQueueOffsets] {
        // Shorter than any archived request, so no validation can pass.
        for header in [&[0xa5u8; 4][..], &[0x00; 1][..]] {
            request_id += 1;
            client
                .send_raw(&crafted::frame_bytes(
                    FrameKind::Request,
                    request_id,
                    opcode.as_u16(),
                    header,
                    b"payload",
                ))
                .unwrap();
            let frame = client.read_frame().unwrap_or_else(|| {
                panic!("{opcode:?}: closed on a bad header\n{}", broker.log_tail())
            });
            assert_eq!(frame.request_id(), RequestId(request_id), "{opcode:?}");
            assert_eq!(
                frame.error_code(),
                Ok(ErrorCode::BadHeader),
                "{opcode:?} with {} header bytes: {:?}",
                header.len(),
                frame
                    .error_detail()
                    .map(|detail| detail.message.to_string())
            );
        }
        // The same connection goes on.
        assert_eq!(client.queue_offsets(TOPIC, 1).unwrap().0, 0);
    }

    // A produce whose part points outside the payload describes no batch: BadHeader too.
    let batch = spillway_tests::encode_batch(TOPIC, &[("", b"x")]);
    let request = ProduceRequest {
        producer_group: "p".into(),
        flush: FlushExpectation::BrokerDefault,
        parts: vec![ProducePart {
            topic: TOPIC.into(),
            queue_id: QueueId(0),
            record_count: 1,
            payload_offset: 0,
            payload_length: batch.len() as u32 + 100,
        }],
    };
    let refused = client
        .call::<_, ProduceResponse>(&request, &batch)
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::BadHeader, "{}", refused.1);
    assert_still_serves(&mut client, &broker, "bad headers (same connection)");
    assert_still_serves(&mut survivor, &broker, "bad headers");
}

#[test]
fn unknown_opcode_gets_unknown_opcode_and_the_connection_stays_usable() {
    let (_name_server, broker) = start();
    let mut client = broker.connect();
    for (request_id, opcode) in [(7u64, 999u16), (8, 0), (9, u16::MAX)] {
        client
            .send_raw(&crafted::frame_bytes(
                FrameKind::Request,
                request_id,
                opcode,
                &[0; 8],
                &[],
            ))
            .unwrap();
        let frame = client
            .read_frame()
            .unwrap_or_else(|| panic!("opcode {opcode}: closed\n{}", broker.log_tail()));
        assert_eq!(frame.request_id(), RequestId(request_id));
        assert_eq!(frame.envelope().opcode_number(), opcode, "echoed opcode");
        assert_eq!(
            frame.error_code(),
            Ok(ErrorCode::UnknownOpcode),
            "opcode {opcode}"
        );
    }
    // Name-server operations are not a broker's either.
    let refused = client
        .call::<_, spillway_wire::message::GetTopicRouteResponse>(
            &spillway_wire::message::GetTopicRouteRequest {
                topic: TOPIC.into(),
            },
            &[],
        )
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::UnknownOpcode, "{}", refused.1);
    assert_still_serves(&mut client, &broker, "unknown opcodes");
}

#[test]
fn unknown_topic_and_queue_get_typed_errors() {
    let (_name_server, broker) = start();
    let mut client = broker.connect();

    let refused = client.pull("no-such-topic", 0, 0, 1, 0, "").unwrap_err();
    assert_eq!(refused.0, ErrorCode::TopicNotFound, "{}", refused.1);
    let refused = client.pull(TOPIC, QUEUES, 0, 1, 0, "").unwrap_err();
    assert_eq!(refused.0, ErrorCode::QueueNotFound, "{}", refused.1);
    let refused = client.queue_offsets("no-such-topic", 0).unwrap_err();
    assert_eq!(refused.0, ErrorCode::TopicNotFound, "{}", refused.1);

    assert_eq!(
        client.produce("no-such-topic", 0, &[("", b"lost")]),
        Err(ErrorCode::TopicNotFound)
    );
    assert_eq!(
        client.produce(TOPIC, QUEUES + 7, &[("", b"lost")]),
        Err(ErrorCode::QueueNotFound)
    );

    // One bad part does not fail the others of the same request.
    let good = spillway_tests::encode_batch(TOPIC, &[("", b"kept")]);
    let bad = spillway_tests::encode_batch("no-such-topic", &[("", b"lost")]);
    let mut payload = good.clone();
    payload.extend_from_slice(&bad);
    let part = |topic: &str, offset: usize, length: usize| ProducePart {
        topic: topic.into(),
        queue_id: QueueId(1),
        record_count: 1,
        payload_offset: offset as u32,
        payload_length: length as u32,
    };
    let request = ProduceRequest {
        producer_group: "p".into(),
        flush: FlushExpectation::Sync,
        parts: vec![
            part(TOPIC, 0, good.len()),
            part("no-such-topic", good.len(), bad.len()),
        ],
    };
    let response = client.produce_request(&request, &payload).unwrap();
    assert_eq!(response.parts.len(), 2);
    assert_eq!(response.parts[0].error_code, 0, "{response:?}");
    assert_eq!(
        response.parts[1].error_code,
        ErrorCode::TopicNotFound.as_u16(),
        "{response:?}"
    );
    let (_, messages) = client.pull(TOPIC, 1, 0, 10, 0, "").unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, b"kept");

    // A record whose topic is not its part's is refused, not stored under the part's topic.
    let mismatched = spillway_tests::encode_batch("other-topic", &[("", b"misfiled")]);
    let request = ProduceRequest::single(
        "p",
        TOPIC,
        QueueId(0),
        1,
        &mismatched,
        FlushExpectation::Sync,
    );
    let response = client.produce_request(&request, &mismatched).unwrap();
    assert_eq!(
        response.parts[0].error_code,
        ErrorCode::BadRecord.as_u16(),
        "{response:?}"
    );
    // A batch with a broken body CRC is refused as a whole. (This is also what a bit
    // flipped in transit looks like: the frame CRC leaves record payloads to the records.)
    let mut damaged = spillway_tests::encode_batch(TOPIC, &[("", b"damaged body")]);
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    let request =
        ProduceRequest::single("p", TOPIC, QueueId(0), 1, &damaged, FlushExpectation::Sync);
    let response = client.produce_request(&request, &damaged).unwrap();
    assert_eq!(
        response.parts[0].error_code,
        ErrorCode::BadRecord.as_u16(),
        "{response:?}"
    );
    assert_eq!(client.queue_offsets(TOPIC, 0).unwrap(), (0, 0));

    assert_still_serves(&mut client, &broker, "unknown topics and queues");
}

#[test]
fn a_consumer_offset_past_the_queue_end_is_refused() {
    let (_name_server, broker) = start();
    let mut client = broker.connect();
    client
        .produce(TOPIC, 1, &[("", b"one"), ("", b"two")])
        .unwrap();
    let untouched = 0; // queue 0: nobody writes to it here
                       // The end itself is a valid next offset; one past it is not, nor is anything on a queue
                       // nobody wrote to.
    client.commit_offset("billing", TOPIC, 1, 2).unwrap();
    let refused = client.commit_offset("billing", TOPIC, 1, 3).unwrap_err();
    assert_eq!(refused.0, ErrorCode::OffsetOutOfRange, "{}", refused.1);
    let refused = client
        .commit_offset("billing", TOPIC, untouched, 1)
        .unwrap_err();
    assert_eq!(refused.0, ErrorCode::OffsetOutOfRange, "{}", refused.1);
    assert_eq!(client.query_offset("billing", TOPIC, 1).unwrap(), Some(2));
    assert_eq!(
        client.query_offset("billing", TOPIC, untouched).unwrap(),
        None
    );
}

#[test]
fn oversized_message_and_batch_are_refused_with_their_codes() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic(TOPIC, QUEUES)
        .set("limits.max_record_bytes", 4096)
        .set("limits.max_batch_bytes", 8192)
        .start();
    let mut client = broker.connect();

    let large = vec![b'x'; 5000];
    assert_eq!(
        client.produce(TOPIC, 0, &[("", &large)]),
        Err(ErrorCode::MessageTooLarge)
    );
    let medium = vec![b'y'; 3000];
    let batch: Vec<(&str, &[u8])> = vec![("", &medium); 3];
    assert_eq!(
        client.produce(TOPIC, 0, &batch),
        Err(ErrorCode::BatchTooLarge)
    );
    // Nothing of either was stored, and messages within the limits still are.
    assert_eq!(client.queue_offsets(TOPIC, 0).unwrap(), (0, 0));
    assert_eq!(client.produce(TOPIC, 0, &batch[..2]), Ok(0));
    assert_still_serves(&mut client, &broker, "oversized messages");
}
