//! `BindShard`: a connection whose first request binds it to a shard is served by that
//! shard from then on, whichever shard's listener the kernel gave it to; requests sent
//! right behind the bind, before its answer, are served too (they move with the socket).
//! A later bind to another shard, and a bind to a shard the broker lacks, are refused with
//! a typed error, and the connection keeps working.

use spillway_tests::wire_client::decode_response;
use spillway_tests::{BrokerConfigBuilder, NameServer, WireClient};
use spillway_wire::message::{
    BindShardRequest, BindShardResponse, GetQueueOffsetsRequest, GetQueueOffsetsResponse,
};
use spillway_wire::{ErrorCode, QueueId, ShardId};

const TOPIC: &str = "bound";
/// With two shards, queue 0 lives on shard 0 and queue 1 on shard 1.
const QUEUES: u32 = 2;
const SHARDS: u16 = 2;
/// Connections bound to each shard: the kernel spreads them over both listeners, so both
/// a bind that moves the connection and one that keeps it are all but certain to happen.
const CONNECTIONS_PER_SHARD: usize = 8;

fn bind(client: &mut WireClient, shard: u16) -> Result<u16, (ErrorCode, String)> {
    client
        .call::<_, BindShardResponse>(
            &BindShardRequest {
                shard: ShardId(shard),
            },
            &[],
        )
        .map(|(response, _)| response.shard.0)
}

#[test]
fn a_bound_connection_is_served_by_its_shard_with_requests_pipelined_behind_the_bind() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .shard_count(SHARDS)
        .topic(TOPIC, QUEUES)
        .start();

    for shard in 0..SHARDS {
        for connection in 0..CONNECTIONS_PER_SHARD {
            let mut client = broker.connect();
            // The bind and a request behind it, in one write, before any answer.
            let bind_id = client.take_request_id();
            let offsets_id = client.take_request_id();
            let mut output = bytes::BytesMut::new();
            let encoder = spillway_wire::FrameEncoder::default();
            encoder
                .encode(
                    &mut output,
                    spillway_wire::Envelope::request(spillway_wire::Opcode::BindShard, bind_id),
                    &BindShardRequest {
                        shard: ShardId(shard),
                    },
                    &[],
                )
                .unwrap();
            encoder
                .encode(
                    &mut output,
                    spillway_wire::Envelope::request(
                        spillway_wire::Opcode::GetQueueOffsets,
                        offsets_id,
                    ),
                    &GetQueueOffsetsRequest {
                        topic: TOPIC.to_owned(),
                        queue_id: QueueId(u32::from(shard)),
                    },
                    &[],
                )
                .unwrap();
            client.send_raw(&output).unwrap();

            let bound = client.response(bind_id).unwrap();
            let (answer, _) = decode_response::<BindShardRequest, BindShardResponse>(&bound)
                .unwrap_or_else(|refused| {
                    panic!("bind {connection} to shard {shard}: {refused:?}")
                });
            assert_eq!(answer.shard.0, shard);
            let offsets = client.response(offsets_id).unwrap();
            let (offsets, _) =
                decode_response::<GetQueueOffsetsRequest, GetQueueOffsetsResponse>(&offsets)
                    .unwrap_or_else(|refused| panic!("offsets behind the bind: {refused:?}"));
            // Every earlier connection produced one message to each queue.
            let earlier = usize::from(shard) * CONNECTIONS_PER_SHARD + connection;
            assert_eq!(
                (offsets.min_offset.0, offsets.max_offset.0),
                (0, earlier as u64)
            );

            // Its own shard again is confirmed; only the shard serving the connection could
            // answer the bind to it, so this also shows the connection stayed there.
            assert_eq!(bind(&mut client, shard), Ok(shard));
            // Moving later is refused, naming the serving shard.
            let other = (shard + 1) % SHARDS;
            let (code, message) = bind(&mut client, other).unwrap_err();
            assert_eq!(code, ErrorCode::InvalidArgument);
            assert!(
                message.contains(&format!("served by shard {shard}")),
                "{message}"
            );
            // A queue of either shard is still served on the bound connection.
            for queue in 0..QUEUES {
                let first = client
                    .produce(TOPIC, queue, &[("tag", b"body".as_slice())])
                    .unwrap();
                let (_, max) = client.queue_offsets(TOPIC, queue).unwrap();
                assert_eq!(max, first + 1);
            }
        }
    }
}

#[test]
fn a_bind_to_a_shard_the_broker_lacks_is_refused_and_the_connection_stays() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .shard_count(SHARDS)
        .topic(TOPIC, QUEUES)
        .start();
    let mut client = broker.connect();
    let (code, message) = bind(&mut client, SHARDS).unwrap_err();
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("no shard 2"), "{message}");
    assert_eq!(client.queue_offsets(TOPIC, 0), Ok((0, 0)));
}
