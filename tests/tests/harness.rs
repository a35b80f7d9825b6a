//! The harness itself, against the real name server (which exists today): starting and
//! stopping a server, the client's pipelining and error responses, the crafted bad input
//! (each refused by a real server for the flaw it was given), and the broker config file the
//! harness writes (checked by the real broker's `--check`).

use spillway_tests::crafted::{self, expect_connection_error};
use spillway_tests::wire_client::decode_response;
use spillway_tests::{route_is_gone, BrokerConfigBuilder, NameServer};
use spillway_wire::message::{
    GetClusterInfoRequest, GetClusterInfoResponse, GetQueueOffsetsRequest, GetQueueOffsetsResponse,
    GetTopicRouteRequest, GetTopicRouteResponse, RegisterBrokerRequest, RegisterBrokerResponse,
    ShardLayout, TopicConfig, UnregisterBrokerRequest, UnregisterBrokerResponse,
};
use spillway_wire::{BrokerId, ErrorCode, FrameKind, Opcode, QueueId, RequestId};

fn registration(address: &str) -> RegisterBrokerRequest {
    RegisterBrokerRequest {
        cluster: "test".into(),
        broker_name: "broker-a".into(),
        broker_id: BrokerId::MASTER,
        address: address.into(),
        shard_count: 2,
        topics_version: 1,
        topics: vec![TopicConfig {
            topic: "orders".into(),
            queue_count: 4,
            shard_layout: ShardLayout::RoundRobin,
        }],
    }
}

#[test]
fn pipelined_requests_get_their_own_responses_in_any_order_of_reading() {
    let mut name_server = NameServer::start(&[]);
    let mut client = name_server.connect();

    let route = GetTopicRouteRequest {
        topic: "orders".into(),
    };
    let not_served = GetQueueOffsetsRequest {
        topic: "orders".into(),
        queue_id: QueueId(0),
    };
    let first = client.send_request(&GetClusterInfoRequest {}, &[]).unwrap();
    let second = client.send_request(&route, &[]).unwrap();
    let third = client.send_request(&not_served, &[]).unwrap();
    assert!(first < second && second < third, "request ids only grow");

    // Read them last to first: the client keeps what arrives early.
    let refused = decode_response::<GetQueueOffsetsRequest, GetQueueOffsetsResponse>(
        &client.response(third).unwrap(),
    )
    .unwrap_err();
    assert_eq!(refused.0, ErrorCode::UnknownOpcode, "{}", refused.1);
    let refused = decode_response::<GetTopicRouteRequest, GetTopicRouteResponse>(
        &client.response(second).unwrap(),
    )
    .unwrap_err();
    assert_eq!(refused.0, ErrorCode::TopicNotFound);
    let (info, payload) = decode_response::<GetClusterInfoRequest, GetClusterInfoResponse>(
        &client.response(first).unwrap(),
    )
    .unwrap();
    assert!(info.clusters.is_empty());
    assert!(payload.is_empty());

    let status = name_server.stop(libc::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", name_server.log_tail());
}

#[test]
fn route_helpers_see_a_registration_come_and_go() {
    let name_server = NameServer::start(&[]);
    let mut broker = name_server.connect();
    assert!(route_is_gone(&broker.topic_route("orders")));

    broker
        .call::<_, RegisterBrokerResponse>(&registration("127.0.0.1:10911"), &[])
        .unwrap();
    let route = name_server
        .wait_for_route("orders", "the route of orders", Result::is_ok)
        .unwrap();
    assert_eq!(route.brokers[0].members[0].address, "127.0.0.1:10911");

    broker
        .call::<_, UnregisterBrokerResponse>(
            &UnregisterBrokerRequest {
                cluster: "test".into(),
                broker_name: "broker-a".into(),
                broker_id: BrokerId::MASTER,
                address: "127.0.0.1:10911".into(),
            },
            &[],
        )
        .unwrap();
    name_server.wait_until_route_is_gone("orders", "the route of orders to go");
}

#[test]
fn crafted_bad_input_is_refused_by_a_real_server_for_its_flaw() {
    let name_server = NameServer::start(&[]);
    let address = name_server.address();
    let mut survivor = name_server.connect();

    let seed: u64 = rand::random();
    println!("noise seed {seed}");
    expect_connection_error(address, &crafted::noise(seed, 512), ErrorCode::BadFrame);
    // The server read all 8 bytes, so its close is clean and the response arrives.
    assert_eq!(
        expect_connection_error(
            address,
            &crafted::oversize_prefix(1 << 30),
            ErrorCode::FrameTooLarge
        ),
        1
    );
    let mut corrupt = crafted::frame_bytes(
        FrameKind::Request,
        1,
        Opcode::GetClusterInfo.as_u16(),
        &[0; 8],
        &[],
    );
    corrupt[crafted::CRC_OFFSET] ^= 0x01;
    expect_connection_error(address, &corrupt, ErrorCode::BadFrame);

    // Request-level flaws: typed errors, and the connection goes on.
    let mut client = name_server.connect();
    client
        .send_raw(&crafted::frame_bytes(
            FrameKind::Request,
            41,
            999,
            &[0; 8],
            &[],
        ))
        .unwrap();
    let frame = client.read_frame().expect("an answer to an unknown opcode");
    assert_eq!(frame.request_id(), RequestId(41));
    assert_eq!(frame.error_code(), Ok(ErrorCode::UnknownOpcode));
    client
        .send_raw(&crafted::frame_bytes(
            FrameKind::Request,
            42,
            Opcode::GetTopicRoute.as_u16(),
            // Shorter than any archived request: cannot validate.
            &[0xa5; 4],
            &[],
        ))
        .unwrap();
    let frame = client.read_frame().expect("an answer to a bad header");
    assert_eq!(frame.request_id(), RequestId(42));
    assert_eq!(frame.error_code(), Ok(ErrorCode::BadHeader));
    assert!(route_is_gone(&client.topic_route("orders")));
    assert!(route_is_gone(&survivor.topic_route("orders")));
}

#[test]
fn broker_config_written_by_the_harness_passes_the_brokers_check() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic("orders", 4)
        .auto_create_topics(true)
        .write();
    let output = broker.check_config();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "spillway-broker --check refused the harness's config ({}):\n{stderr}\n--- config:\n{}",
        output.status,
        std::fs::read_to_string(broker.config_path()).unwrap()
    );
    assert!(stdout.contains("orders"), "{stdout}");
}
