//! Clients as brokers see them: heartbeats ([`Opcode::ClientHeartbeat`](crate::Opcode))
//! with the client's groups and subscriptions, and consumer group membership
//! ([`Opcode::GetConsumerGroupMembers`](crate::Opcode)), from which each member of a
//! clustering group computes its share of the queues.

use rkyv::{Archive, Deserialize, Serialize};

/// How a consumer group shares messages.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq))]
pub enum ConsumeMode {
    /// The queues are split among the members; each message goes to one member.
    Clustering,
    /// Every member gets every message.
    Broadcasting,
}

/// A topic a consumer group reads, and which tags.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct Subscription {
    /// Topic.
    pub topic: String,
    /// Tags, as in [`PullRequest::tag_expression`](crate::message::PullRequest).
    pub tag_expression: String,
}

/// A consumer group a client belongs to.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ConsumerGroupMembership {
    /// The consumer group.
    pub consumer_group: String,
    /// How the group shares messages.
    pub consume_mode: ConsumeMode,
    /// What the group reads.
    pub subscriptions: Vec<Subscription>,
}

/// Client heartbeat request header (often sent one-way).
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct ClientHeartbeatRequest {
    /// Unique per client process (e.g. `host@pid@start`).
    pub client_id: String,
    /// The producer groups it produces for.
    pub producer_groups: Vec<String>,
    /// The consumer groups it consumes in.
    pub consumer_groups: Vec<ConsumerGroupMembership>,
}

/// Client heartbeat response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct ClientHeartbeatResponse {}

/// Get consumer group members request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetConsumerGroupMembersRequest {
    /// The consumer group.
    pub consumer_group: String,
}

/// Get consumer group members response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct GetConsumerGroupMembersResponse {
    /// The client ids with a live heartbeat in the group, sorted, so every member computes
    /// the same queue assignment.
    pub client_ids: Vec<String>,
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    samples.add(ClientHeartbeatRequest {
        client_id: "host-1@4242@1700000000".into(),
        producer_groups: vec!["checkout".into()],
        consumer_groups: vec![
            ConsumerGroupMembership {
                consumer_group: "billing".into(),
                consume_mode: ConsumeMode::Clustering,
                subscriptions: vec![Subscription {
                    topic: "orders".into(),
                    tag_expression: "paid || refunded".into(),
                }],
            },
            ConsumerGroupMembership {
                consumer_group: "cache-invalidation".into(),
                consume_mode: ConsumeMode::Broadcasting,
                subscriptions: vec![],
            },
        ],
    });
    samples.add(ClientHeartbeatResponse {});
    samples.add(GetConsumerGroupMembersRequest {
        consumer_group: "billing".into(),
    });
    samples.add(GetConsumerGroupMembersResponse {
        client_ids: vec!["a@1@1".into(), "b@2@2".into()],
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_registry_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 4);
    }
}
