//! Consumer group membership: clients that heartbeat with a consumer group are its members,
//! whichever shard their connection landed on, and a client whose connection closes leaves
//! the group.

use spillway_tests::{poll_until, BrokerConfigBuilder, NameServer, WireClient, DEADLINE};
use spillway_wire::message::{
    ClientHeartbeatRequest, ClientHeartbeatResponse, ConsumeMode, ConsumerGroupMembership,
    GetConsumerGroupMembersRequest, GetConsumerGroupMembersResponse, Subscription,
};

const GROUP: &str = "billing";
const CLIENTS: usize = 4;

fn heartbeat(client: &mut WireClient, client_id: &str) {
    let request = ClientHeartbeatRequest {
        client_id: client_id.into(),
        producer_groups: vec!["checkout".into()],
        consumer_groups: vec![ConsumerGroupMembership {
            consumer_group: GROUP.into(),
            consume_mode: ConsumeMode::Clustering,
            subscriptions: vec![Subscription {
                topic: "orders".into(),
                tag_expression: "*".into(),
            }],
        }],
    };
    client
        .call::<_, ClientHeartbeatResponse>(&request, &[])
        .unwrap();
}

fn members(client: &mut WireClient, group: &str) -> Vec<String> {
    let (response, _) = client
        .call::<_, GetConsumerGroupMembersResponse>(
            &GetConsumerGroupMembersRequest {
                consumer_group: group.into(),
            },
            &[],
        )
        .unwrap();
    let mut client_ids = response.client_ids;
    client_ids.sort();
    client_ids
}

#[test]
fn heartbeating_clients_are_group_members_until_their_connection_closes() {
    let name_server = NameServer::start(&[]);
    let broker = BrokerConfigBuilder::new(&[name_server.address()])
        .topic("orders", 2)
        .start();
    let mut observer = broker.connect();
    assert!(members(&mut observer, GROUP).is_empty());

    // Several connections, so that both shards receive heartbeats.
    let mut clients: Vec<(String, WireClient)> = (0..CLIENTS)
        .map(|index| (format!("consumer-{index}"), broker.connect()))
        .collect();
    for (client_id, client) in &mut clients {
        heartbeat(client, client_id);
    }
    let all: Vec<String> = clients.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(members(&mut observer, GROUP), all);
    assert!(members(&mut observer, "another-group").is_empty());

    // A second heartbeat does not make a second member.
    heartbeat(&mut clients[0].1, "consumer-0");
    assert_eq!(members(&mut observer, GROUP), all);

    // Closing a connection removes its client (the broker hears of the close).
    let (gone, connection) = clients.remove(1);
    drop(connection);
    let remaining: Vec<String> = all.iter().filter(|id| **id != gone).cloned().collect();
    poll_until(&format!("{gone} leaving {GROUP}"), DEADLINE, || {
        (members(&mut observer, GROUP) == remaining).then_some(())
    });
}
