//! Routes from the name servers: which broker groups serve a topic
//! ([`Opcode::GetTopicRoute`](crate::Opcode)), and the whole cluster layout
//! ([`Opcode::GetClusterInfo`](crate::Opcode)). Clients cache routes and refresh them (and
//! do so at once after [`ErrorCode::NotMaster`](crate::ErrorCode::NotMaster) or a failed
//! connection).

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::BrokerId;
use crate::message::topic::ShardLayout;

/// One broker of a group and where to reach it.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BrokerMember {
    /// 0 for the master, > 0 for a replica.
    pub broker_id: BrokerId,
    /// `host:port`.
    pub address: String,
}

/// A broker group serving a topic, with the topic's queues there.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BrokerRoute {
    /// The broker group.
    pub broker_name: String,
    /// Its live members (the master, if alive, has id 0); writes go to the master, reads
    /// may go to a replica.
    pub members: Vec<BrokerMember>,
    /// The group's shard count.
    pub shard_count: u16,
    /// The topic's queues on this group: 0 .. queue_count.
    pub queue_count: u32,
    /// Which shard owns each of those queues.
    pub shard_layout: ShardLayout,
}

/// Get topic route request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetTopicRouteRequest {
    /// The topic.
    pub topic: String,
}

/// Get topic route response header
/// ([`ErrorCode::TopicNotFound`](crate::ErrorCode::TopicNotFound) if no broker has it).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetTopicRouteResponse {
    /// The topic.
    pub topic: String,
    /// Every broker group holding it.
    pub brokers: Vec<BrokerRoute>,
}

/// A broker group and its members.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BrokerGroup {
    /// The broker group.
    pub broker_name: String,
    /// Its live members.
    pub members: Vec<BrokerMember>,
}

/// A cluster and its broker groups.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ClusterInfo {
    /// The cluster name.
    pub cluster: String,
    /// Its broker groups.
    pub broker_groups: Vec<BrokerGroup>,
}

/// Get cluster info request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct GetClusterInfoRequest {}

/// Get cluster info response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetClusterInfoResponse {
    /// Every cluster the name server knows.
    pub clusters: Vec<ClusterInfo>,
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    use crate::ids::ShardId;
    let members = vec![
        BrokerMember {
            broker_id: BrokerId::MASTER,
            address: "10.0.0.1:9876".into(),
        },
        BrokerMember {
            broker_id: BrokerId(1),
            address: "10.0.0.2:9876".into(),
        },
    ];
    samples.add(GetTopicRouteRequest {
        topic: "orders".into(),
    });
    samples.add(GetTopicRouteResponse {
        topic: "orders".into(),
        brokers: vec![
            BrokerRoute {
                broker_name: "broker-a".into(),
                members: members.clone(),
                shard_count: 4,
                queue_count: 8,
                shard_layout: ShardLayout::RoundRobin,
            },
            BrokerRoute {
                broker_name: "broker-b".into(),
                members: vec![],
                shard_count: 1,
                queue_count: 2,
                shard_layout: ShardLayout::Pinned(vec![ShardId(0), ShardId(0)]),
            },
        ],
    });
    samples.add(GetClusterInfoRequest {});
    samples.add(GetClusterInfoResponse {
        clusters: vec![ClusterInfo {
            cluster: "main".into(),
            broker_groups: vec![BrokerGroup {
                broker_name: "broker-a".into(),
                members,
            }],
        }],
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn route_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 4);
    }
}
