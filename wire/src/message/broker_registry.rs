//! Broker registration with the name servers: register
//! ([`Opcode::RegisterBroker`](crate::Opcode)), heartbeat
//! ([`Opcode::BrokerHeartbeat`](crate::Opcode)), unregister
//! ([`Opcode::UnregisterBroker`](crate::Opcode)).
//!
//! A broker registers with *every* name server at start and whenever its topics change,
//! then heartbeats (default every 30 s); a name server forgets a broker after 120 s of
//! silence. A heartbeat is small: it carries the version of the broker's topic set, and the
//! name server answers `registration_needed` if it does not know the broker or holds an
//! older version (e.g. it restarted), so the broker then sends the full registration.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::BrokerId;
use crate::message::topic::TopicConfig;

/// Register broker request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegisterBrokerRequest {
    /// The cluster the broker belongs to.
    pub cluster: String,
    /// Its broker group (master and replicas share it).
    pub broker_name: String,
    /// 0 for the master, > 0 for a replica.
    pub broker_id: BrokerId,
    /// Where clients reach it: `host:port`.
    pub address: String,
    /// How many shards it runs (needed to compute `queue -> shard`).
    pub shard_count: u16,
    /// Grows whenever the topic set changes.
    pub topics_version: u64,
    /// Every topic it holds.
    pub topics: Vec<TopicConfig>,
}

/// Register broker response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct RegisterBrokerResponse {
    /// For a replica: the address of its group's master, if registered.
    pub master_address: Option<String>,
}

/// Broker heartbeat request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BrokerHeartbeatRequest {
    /// The cluster.
    pub cluster: String,
    /// The broker group.
    pub broker_name: String,
    /// The broker in its group.
    pub broker_id: BrokerId,
    /// The version of its topic set (as last registered).
    pub topics_version: u64,
}

/// Broker heartbeat response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BrokerHeartbeatResponse {
    /// The name server does not know this broker or has an older topic set: register again.
    pub registration_needed: bool,
}

/// Unregister broker request header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct UnregisterBrokerRequest {
    /// The cluster.
    pub cluster: String,
    /// The broker group.
    pub broker_name: String,
    /// The broker in its group.
    pub broker_id: BrokerId,
    /// Its address (so a stale unregister cannot remove a restarted broker elsewhere).
    pub address: String,
}

/// Unregister broker response header.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[rkyv(derive(Debug))]
pub struct UnregisterBrokerResponse {}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    use super::topic::sample_topic;
    samples.add(RegisterBrokerRequest {
        cluster: "main".into(),
        broker_name: "broker-a".into(),
        broker_id: BrokerId::MASTER,
        address: "10.0.0.1:9876".into(),
        shard_count: 2,
        topics_version: 3,
        topics: vec![
            sample_topic("orders", 8, false),
            sample_topic("audit", 3, true),
        ],
    });
    samples.add(RegisterBrokerResponse {
        master_address: None,
    });
    samples.add(RegisterBrokerResponse {
        master_address: Some("10.0.0.1:9876".into()),
    });
    samples.add(BrokerHeartbeatRequest {
        cluster: "main".into(),
        broker_name: "broker-a".into(),
        broker_id: BrokerId(1),
        topics_version: 3,
    });
    samples.add(BrokerHeartbeatResponse {
        registration_needed: true,
    });
    samples.add(UnregisterBrokerRequest {
        cluster: "main".into(),
        broker_name: "broker-a".into(),
        broker_id: BrokerId(1),
        address: "[::1]:9876".into(),
    });
    samples.add(UnregisterBrokerResponse {});
}

#[cfg(test)]
mod tests {
    #[test]
    fn broker_registry_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 7);
    }
}
