//! [`Registry`]: the name server's whole state, in memory: clusters, broker groups
//! (name → broker id → address), each broker's topics with their queues and shard layout,
//! and when each broker was last heard from.
//!
//! It is pure: no I/O, no sockets, and it never reads the clock. Every operation that
//! depends on time takes `now` as an argument, so the server passes the real clock and the
//! tests pass whatever instant they like (expiry is tested without sleeping).
//!
//! Model. A broker is identified by its group name and broker id (0 = master). A group
//! belongs to one cluster; a member registering the same group under another cluster is
//! refused while the group has live members (a group name names one group, as clients
//! see routes by group name). Each member keeps what it registered: address, shard count,
//! topics and their version. A topic's route lists every group where some live member holds
//! the topic, with the members holding it and the queue layout of the lowest-id one (the
//! master when it is alive). A group disappears with its last member, a cluster with its
//! last group.
//!
//! Limits: [`Registry::new`] takes the most brokers it holds; names and addresses are at
//! most [`MAX_NAME_BYTES`]; the number of topics per broker is bounded by the frame limit.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use spillway_wire::message::{
    BrokerGroup, BrokerHeartbeatRequest, BrokerMember, BrokerRoute, ClusterInfo,
    GetClusterInfoResponse, GetTopicRouteResponse, RegisterBrokerRequest, RegisterBrokerResponse,
    ShardLayout, TopicConfig, UnregisterBrokerRequest,
};
use spillway_wire::{BrokerId, ErrorCode};

/// Longest cluster name, broker group name, topic name or address accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Why a registry operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A field of the registration is empty, too long or inconsistent.
    #[error("invalid registration of {broker_name}/{broker_id}: {reason}")]
    InvalidRegistration {
        /// The broker group.
        broker_name: String,
        /// The broker in the group.
        broker_id: u32,
        /// What is wrong.
        reason: String,
    },
    /// The group is registered (with live members) under another cluster.
    #[error("broker group {broker_name} belongs to cluster {registered_cluster}, not {cluster}")]
    ClusterMismatch {
        /// The group.
        broker_name: String,
        /// The cluster it is registered under.
        registered_cluster: String,
        /// The cluster the request names.
        cluster: String,
    },
    /// The registry holds its maximum number of brokers.
    #[error("the name server already holds its limit of {max_brokers} brokers")]
    TooManyBrokers {
        /// The limit.
        max_brokers: usize,
    },
    /// No live broker holds the topic.
    #[error("no broker holds topic {topic}")]
    TopicNotFound {
        /// The topic.
        topic: String,
    },
}

impl RegistryError {
    /// The code a server answers with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            RegistryError::InvalidRegistration { .. } | RegistryError::ClusterMismatch { .. } => {
                ErrorCode::InvalidArgument
            }
            RegistryError::TooManyBrokers { .. } => ErrorCode::ServiceUnavailable,
            RegistryError::TopicNotFound { .. } => ErrorCode::TopicNotFound,
        }
    }
}

/// What a registration did, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registered {
    /// A broker not known before.
    New,
    /// A known broker, same address: its topics are replaced.
    Updated,
    /// A known broker at a new address (e.g. restarted elsewhere).
    Moved {
        /// The address it had.
        previous_address: String,
    },
}

/// What an unregistration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unregistered {
    /// The broker was removed.
    Removed,
    /// No such broker: nothing to do (unregistering is idempotent).
    Unknown,
    /// The broker is registered at another address (a stale unregister): kept.
    AddressMismatch {
        /// The address it is registered at.
        registered_address: String,
    },
}

/// A broker removed for silence by [`Registry::expire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredBroker {
    /// Its cluster.
    pub cluster: String,
    /// Its group.
    pub broker_name: String,
    /// Its id in the group.
    pub broker_id: BrokerId,
    /// Its address.
    pub address: String,
    /// How long it had been silent.
    pub silent_for: Duration,
}

/// One registered broker.
#[derive(Clone, Debug)]
struct Member {
    address: String,
    shard_count: u16,
    topics_version: u64,
    /// By topic name.
    topics: BTreeMap<String, TopicConfig>,
    last_heartbeat: Instant,
}

/// A broker group: its cluster and its live members by id.
#[derive(Clone, Debug)]
struct Group {
    cluster: String,
    members: BTreeMap<BrokerId, Member>,
}

/// The name server's state. See the module docs.
#[derive(Debug)]
pub struct Registry {
    /// By group name.
    groups: BTreeMap<String, Group>,
    broker_count: usize,
    max_brokers: usize,
}

impl Registry {
    /// An empty registry holding at most `max_brokers` brokers.
    pub fn new(max_brokers: usize) -> Registry {
        Registry {
            groups: BTreeMap::new(),
            broker_count: 0,
            max_brokers,
        }
    }

    /// How many brokers are registered.
    pub fn broker_count(&self) -> usize {
        self.broker_count
    }

    /// Registers a broker, or replaces what a registered one said (address, shard count,
    /// topics), and counts as a heartbeat at `now`.
    pub fn register(
        &mut self,
        request: RegisterBrokerRequest,
        now: Instant,
    ) -> Result<(Registered, RegisterBrokerResponse), RegistryError> {
        let topics = validate_registration(&request)?;
        let RegisterBrokerRequest {
            cluster,
            broker_name,
            broker_id,
            address,
            shard_count,
            topics_version,
            topics: _,
        } = request;
        let known = self
            .groups
            .get(&broker_name)
            .is_some_and(|group| group.members.contains_key(&broker_id));
        if !known && self.broker_count >= self.max_brokers {
            return Err(RegistryError::TooManyBrokers {
                max_brokers: self.max_brokers,
            });
        }
        let group = match self.groups.entry(broker_name.clone()) {
            Entry::Vacant(vacant) => vacant.insert(Group {
                cluster: cluster.clone(),
                members: BTreeMap::new(),
            }),
            Entry::Occupied(occupied) => {
                let group = occupied.into_mut();
                if group.cluster != cluster {
                    return Err(RegistryError::ClusterMismatch {
                        broker_name,
                        registered_cluster: group.cluster.clone(),
                        cluster,
                    });
                }
                group
            }
        };
        let member = Member {
            address,
            shard_count,
            topics_version,
            topics,
            last_heartbeat: now,
        };
        let registered = match group.members.insert(broker_id, member) {
            None => {
                self.broker_count += 1;
                Registered::New
            }
            Some(previous) if previous.address == group.members[&broker_id].address => {
                Registered::Updated
            }
            Some(previous) => Registered::Moved {
                previous_address: previous.address,
            },
        };
        let master_address = if broker_id == BrokerId::MASTER {
            None
        } else {
            group
                .members
                .get(&BrokerId::MASTER)
                .map(|master| master.address.clone())
        };
        Ok((registered, RegisterBrokerResponse { master_address }))
    }

    /// Records a heartbeat at `now`. A broker the registry does not know, knows under
    /// another cluster, or knows with another topic set version must register again
    /// (`registration_needed`); its heartbeat time is then left alone.
    pub fn heartbeat(&mut self, request: &BrokerHeartbeatRequest, now: Instant) -> bool {
        let member = self
            .groups
            .get_mut(&request.broker_name)
            .filter(|group| group.cluster == request.cluster)
            .and_then(|group| group.members.get_mut(&request.broker_id));
        match member {
            Some(member) if member.topics_version == request.topics_version => {
                member.last_heartbeat = now;
                false
            }
            _ => true,
        }
    }

    /// Removes a broker if it is registered at the address the request names.
    pub fn unregister(&mut self, request: &UnregisterBrokerRequest) -> Unregistered {
        let Some(group) = self
            .groups
            .get_mut(&request.broker_name)
            .filter(|group| group.cluster == request.cluster)
        else {
            return Unregistered::Unknown;
        };
        let Entry::Occupied(member) = group.members.entry(request.broker_id) else {
            return Unregistered::Unknown;
        };
        if member.get().address != request.address {
            return Unregistered::AddressMismatch {
                registered_address: member.get().address.clone(),
            };
        }
        member.remove();
        self.broker_count -= 1;
        if group.members.is_empty() {
            self.groups.remove(&request.broker_name);
        }
        Unregistered::Removed
    }

    /// The route of `topic`: every group where a live member holds it, in group name order.
    pub fn topic_route(&self, topic: &str) -> Result<GetTopicRouteResponse, RegistryError> {
        let brokers: Vec<BrokerRoute> = self
            .groups
            .iter()
            .filter_map(|(broker_name, group)| {
                let holders: Vec<(&BrokerId, &Member, &TopicConfig)> = group
                    .members
                    .iter()
                    .filter_map(|(id, member)| {
                        member.topics.get(topic).map(|config| (id, member, config))
                    })
                    .collect();
                // Members are in id order: the first holder is the master when it is alive.
                let (_, first, config) = holders.first()?;
                Some(BrokerRoute {
                    broker_name: broker_name.clone(),
                    members: holders
                        .iter()
                        .map(|(id, member, _)| BrokerMember {
                            broker_id: **id,
                            address: member.address.clone(),
                        })
                        .collect(),
                    shard_count: first.shard_count,
                    queue_count: config.queue_count,
                    shard_layout: config.shard_layout.clone(),
                })
            })
            .collect();
        if brokers.is_empty() {
            return Err(RegistryError::TopicNotFound {
                topic: topic.to_owned(),
            });
        }
        Ok(GetTopicRouteResponse {
            topic: topic.to_owned(),
            brokers,
        })
    }

    /// Every cluster with its groups and their members, in name order.
    pub fn cluster_info(&self) -> GetClusterInfoResponse {
        let mut clusters: BTreeMap<&str, Vec<BrokerGroup>> = BTreeMap::new();
        for (broker_name, group) in &self.groups {
            clusters
                .entry(group.cluster.as_str())
                .or_default()
                .push(BrokerGroup {
                    broker_name: broker_name.clone(),
                    members: group
                        .members
                        .iter()
                        .map(|(id, member)| BrokerMember {
                            broker_id: *id,
                            address: member.address.clone(),
                        })
                        .collect(),
                });
        }
        GetClusterInfoResponse {
            clusters: clusters
                .into_iter()
                .map(|(cluster, broker_groups)| ClusterInfo {
                    cluster: cluster.to_owned(),
                    broker_groups,
                })
                .collect(),
        }
    }

    /// Removes every broker silent for longer than `broker_timeout` at `now`, and returns
    /// them. A heartbeat "from the future" (clock skew between callers) counts as fresh.
    pub fn expire(&mut self, now: Instant, broker_timeout: Duration) -> Vec<ExpiredBroker> {
        let mut expired = Vec::new();
        for (broker_name, group) in &mut self.groups {
            group.members.retain(|broker_id, member| {
                let silent_for = now.saturating_duration_since(member.last_heartbeat);
                if silent_for <= broker_timeout {
                    return true;
                }
                expired.push(ExpiredBroker {
                    cluster: group.cluster.clone(),
                    broker_name: broker_name.clone(),
                    broker_id: *broker_id,
                    address: member.address.clone(),
                    silent_for,
                });
                false
            });
        }
        self.groups.retain(|_, group| !group.members.is_empty());
        self.broker_count -= expired.len();
        expired
    }
}

/// Checks a registration; returns its topics by name.
fn validate_registration(
    request: &RegisterBrokerRequest,
) -> Result<BTreeMap<String, TopicConfig>, RegistryError> {
    let refuse = |reason: String| RegistryError::InvalidRegistration {
        broker_name: request.broker_name.clone(),
        broker_id: request.broker_id.0,
        reason,
    };
    for (field, value) in [
        ("cluster", &request.cluster),
        ("broker_name", &request.broker_name),
        ("address", &request.address),
    ] {
        check_name(value).map_err(|problem| refuse(format!("{field} {problem}")))?;
    }
    if request.shard_count == 0 {
        return Err(refuse("shard_count is 0".into()));
    }
    let mut topics = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for topic in &request.topics {
        check_name(&topic.topic).map_err(|problem| refuse(format!("topic name {problem}")))?;
        if !seen.insert(topic.topic.as_str()) {
            return Err(refuse(format!("topic {} is listed twice", topic.topic)));
        }
        if topic.queue_count == 0 {
            return Err(refuse(format!("topic {} has 0 queues", topic.topic)));
        }
        if let ShardLayout::Pinned(pinned) = &topic.shard_layout {
            if pinned.len() as u64 != u64::from(topic.queue_count) {
                return Err(refuse(format!(
                    "topic {} pins {} queues but has {}",
                    topic.topic,
                    pinned.len(),
                    topic.queue_count
                )));
            }
            if let Some(shard) = pinned.iter().find(|shard| shard.0 >= request.shard_count) {
                return Err(refuse(format!(
                    "topic {} pins a queue to shard {} of {}",
                    topic.topic, shard.0, request.shard_count
                )));
            }
        }
        topics.insert(topic.topic.clone(), topic.clone());
    }
    Ok(topics)
}

fn check_name(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(format!(
            "is {} bytes, longer than {MAX_NAME_BYTES}",
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use spillway_wire::ShardId;

    use super::*;

    fn topic(name: &str, queue_count: u32) -> TopicConfig {
        TopicConfig {
            topic: name.into(),
            queue_count,
            shard_layout: ShardLayout::RoundRobin,
        }
    }

    fn registration(broker_name: &str, broker_id: u32, topics: &[&str]) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            cluster: "main".into(),
            broker_name: broker_name.into(),
            broker_id: BrokerId(broker_id),
            address: format!("10.0.0.{broker_id}:10911"),
            shard_count: 2,
            topics_version: 1,
            topics: topics.iter().map(|name| topic(name, 4)).collect(),
        }
    }

    fn heartbeat(broker_name: &str, broker_id: u32, topics_version: u64) -> BrokerHeartbeatRequest {
        BrokerHeartbeatRequest {
            cluster: "main".into(),
            broker_name: broker_name.into(),
            broker_id: BrokerId(broker_id),
            topics_version,
        }
    }

    #[test]
    fn registered_topic_has_a_route_with_address_id_queues_and_layout() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        let mut request = registration("broker-a", 0, &["orders"]);
        request.topics.push(TopicConfig {
            topic: "audit".into(),
            queue_count: 3,
            shard_layout: ShardLayout::Pinned(vec![ShardId(1), ShardId(0), ShardId(1)]),
        });
        let (registered, response) = registry.register(request, now).unwrap();
        assert_eq!(registered, Registered::New);
        assert_eq!(response.master_address, None);

        let route = registry.topic_route("audit").unwrap();
        assert_eq!(route.topic, "audit");
        assert_eq!(
            route.brokers,
            vec![BrokerRoute {
                broker_name: "broker-a".into(),
                members: vec![BrokerMember {
                    broker_id: BrokerId(0),
                    address: "10.0.0.0:10911".into(),
                }],
                shard_count: 2,
                queue_count: 3,
                shard_layout: ShardLayout::Pinned(vec![ShardId(1), ShardId(0), ShardId(1)]),
            }]
        );
        assert_eq!(
            registry.topic_route("missing"),
            Err(RegistryError::TopicNotFound {
                topic: "missing".into()
            })
        );
    }

    #[test]
    fn route_lists_every_group_and_the_members_holding_the_topic() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        registry
            .register(registration("broker-a", 0, &["orders"]), now)
            .unwrap();
        let (_, replica) = registry
            .register(registration("broker-a", 1, &["orders"]), now)
            .unwrap();
        assert_eq!(replica.master_address.as_deref(), Some("10.0.0.0:10911"));
        registry
            .register(registration("broker-b", 0, &["orders", "audit"]), now)
            .unwrap();
        registry
            .register(registration("broker-c", 0, &["audit"]), now)
            .unwrap();

        let route = registry.topic_route("orders").unwrap();
        let groups: Vec<(&str, Vec<u32>)> = route
            .brokers
            .iter()
            .map(|broker| {
                let ids = broker.members.iter().map(|m| m.broker_id.0).collect();
                (broker.broker_name.as_str(), ids)
            })
            .collect();
        assert_eq!(groups, [("broker-a", vec![0, 1]), ("broker-b", vec![0])]);
        assert_eq!(registry.broker_count(), 4);
    }

    #[test]
    fn reregistration_replaces_topics_and_reports_a_move() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        registry
            .register(registration("broker-a", 0, &["orders"]), now)
            .unwrap();
        let (registered, _) = registry
            .register(registration("broker-a", 0, &["audit"]), now)
            .unwrap();
        assert_eq!(registered, Registered::Updated);
        assert!(registry.topic_route("orders").is_err());
        assert!(registry.topic_route("audit").is_ok());

        let mut moved = registration("broker-a", 0, &["audit"]);
        moved.address = "10.9.9.9:10911".into();
        let (registered, _) = registry.register(moved, now).unwrap();
        assert_eq!(
            registered,
            Registered::Moved {
                previous_address: "10.0.0.0:10911".into()
            }
        );
        assert_eq!(registry.broker_count(), 1);
    }

    #[test]
    fn invalid_registrations_are_refused_with_the_reason() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        let mut cases: Vec<(RegisterBrokerRequest, &str)> = Vec::new();
        let mut request = registration("broker-a", 0, &[]);
        request.cluster.clear();
        cases.push((request, "cluster is empty"));
        let mut request = registration("broker-a", 0, &[]);
        request.address = "x".repeat(MAX_NAME_BYTES + 1);
        cases.push((request, "address is 256 bytes"));
        let mut request = registration("broker-a", 0, &[]);
        request.shard_count = 0;
        cases.push((request, "shard_count is 0"));
        cases.push((
            registration("broker-a", 0, &["orders", "orders"]),
            "listed twice",
        ));
        let mut request = registration("broker-a", 0, &["orders"]);
        request.topics[0].queue_count = 0;
        cases.push((request, "has 0 queues"));
        let mut request = registration("broker-a", 0, &["orders"]);
        request.topics[0].shard_layout = ShardLayout::Pinned(vec![ShardId(0)]);
        cases.push((request, "pins 1 queues but has 4"));
        let mut request = registration("broker-a", 0, &["orders"]);
        request.topics[0].shard_layout = ShardLayout::Pinned(vec![ShardId(2); 4]);
        cases.push((request, "to shard 2 of 2"));
        for (request, expected) in cases {
            let error = registry.register(request, now).unwrap_err();
            assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
            assert!(error.to_string().contains(expected), "{error}");
        }
        assert_eq!(registry.broker_count(), 0);
    }

    #[test]
    fn group_stays_in_its_cluster_and_broker_limit_holds() {
        let mut registry = Registry::new(2);
        let now = Instant::now();
        registry
            .register(registration("broker-a", 0, &[]), now)
            .unwrap();
        let mut other_cluster = registration("broker-a", 1, &[]);
        other_cluster.cluster = "other".into();
        let error = registry.register(other_cluster, now).unwrap_err();
        assert!(matches!(error, RegistryError::ClusterMismatch { .. }));

        registry
            .register(registration("broker-b", 0, &[]), now)
            .unwrap();
        let error = registry
            .register(registration("broker-c", 0, &[]), now)
            .unwrap_err();
        assert_eq!(error, RegistryError::TooManyBrokers { max_brokers: 2 });
        assert_eq!(error.error_code(), ErrorCode::ServiceUnavailable);
        // A known broker re-registers even at the limit.
        registry
            .register(registration("broker-b", 0, &["orders"]), now)
            .unwrap();
    }

    #[test]
    fn heartbeat_asks_unknown_or_outdated_brokers_to_register() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        assert!(registry.heartbeat(&heartbeat("broker-a", 0, 1), now));
        registry
            .register(registration("broker-a", 0, &["orders"]), now)
            .unwrap();
        assert!(!registry.heartbeat(&heartbeat("broker-a", 0, 1), now));
        assert!(registry.heartbeat(&heartbeat("broker-a", 0, 2), now));
        let mut other_cluster = heartbeat("broker-a", 0, 1);
        other_cluster.cluster = "other".into();
        assert!(registry.heartbeat(&other_cluster, now));
    }

    #[test]
    fn unregister_removes_only_the_broker_at_that_address() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        registry
            .register(registration("broker-a", 0, &["orders"]), now)
            .unwrap();
        let mut request = UnregisterBrokerRequest {
            cluster: "main".into(),
            broker_name: "broker-a".into(),
            broker_id: BrokerId(0),
            address: "10.0.0.7:10911".into(),
        };
        assert_eq!(
            registry.unregister(&request),
            Unregistered::AddressMismatch {
                registered_address: "10.0.0.0:10911".into()
            }
        );
        assert!(registry.topic_route("orders").is_ok());
        request.address = "10.0.0.0:10911".into();
        assert_eq!(registry.unregister(&request), Unregistered::Removed);
        assert_eq!(registry.unregister(&request), Unregistered::Unknown);
        assert!(registry.topic_route("orders").is_err());
        assert_eq!(registry.broker_count(), 0);
        assert!(registry.cluster_info().clusters.is_empty());
    }

    #[test]
    fn cluster_info_groups_members_by_cluster_and_group() {
        let mut registry = Registry::new(16);
        let now = Instant::now();
        for (cluster, broker_name, broker_id) in [
            ("main", "broker-b", 0),
            ("main", "broker-a", 1),
            ("main", "broker-a", 0),
            ("batch", "broker-z", 0),
        ] {
            let mut request = registration(broker_name, broker_id, &[]);
            request.cluster = cluster.into();
            registry.register(request, now).unwrap();
        }
        let info = registry.cluster_info();
        /// Group name and member ids.
        type GroupSummary<'a> = (&'a str, Vec<u32>);
        let summary: Vec<(&str, Vec<GroupSummary>)> = info
            .clusters
            .iter()
            .map(|cluster| {
                let groups = cluster
                    .broker_groups
                    .iter()
                    .map(|group| {
                        let ids = group.members.iter().map(|m| m.broker_id.0).collect();
                        (group.broker_name.as_str(), ids)
                    })
                    .collect();
                (cluster.cluster.as_str(), groups)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("batch", vec![("broker-z", vec![0])]),
                (
                    "main",
                    vec![("broker-a", vec![0, 1]), ("broker-b", vec![0])]
                ),
            ]
        );
    }

    #[test]
    fn silent_broker_expires_after_the_timeout_and_heartbeats_keep_it() {
        let mut registry = Registry::new(16);
        let timeout = Duration::from_millis(120_000);
        let start = Instant::now();
        registry
            .register(registration("broker-a", 0, &["orders"]), start)
            .unwrap();
        registry
            .register(registration("broker-b", 0, &["orders"]), start)
            .unwrap();

        // broker-a heartbeats at +100 s; broker-b stays silent.
        let later = start + Duration::from_secs(100);
        assert!(!registry.heartbeat(&heartbeat("broker-a", 0, 1), later));

        // Exactly at the timeout nothing expires: only silence *longer* than it counts.
        assert!(registry.expire(start + timeout, timeout).is_empty());

        let expired = registry.expire(start + timeout + Duration::from_millis(1), timeout);
        assert_eq!(
            expired,
            vec![ExpiredBroker {
                cluster: "main".into(),
                broker_name: "broker-b".into(),
                broker_id: BrokerId(0),
                address: "10.0.0.0:10911".into(),
                silent_for: timeout + Duration::from_millis(1),
            }]
        );
        let route = registry.topic_route("orders").unwrap();
        assert_eq!(route.brokers.len(), 1);
        assert_eq!(route.brokers[0].broker_name, "broker-a");
        assert_eq!(registry.broker_count(), 1);

        // broker-a expires 120 s after its last heartbeat, and the topic is gone.
        assert!(registry.expire(later + timeout, timeout).is_empty());
        let expired = registry.expire(later + timeout + Duration::from_secs(1), timeout);
        assert_eq!(expired.len(), 1);
        assert!(registry.topic_route("orders").is_err());
        assert_eq!(registry.broker_count(), 0);
        assert!(registry.cluster_info().clusters.is_empty());
    }

    #[test]
    fn expired_master_leaves_the_replica_serving_the_route() {
        let mut registry = Registry::new(16);
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        registry
            .register(registration("broker-a", 0, &["orders"]), start)
            .unwrap();
        registry
            .register(registration("broker-a", 1, &["orders"]), start)
            .unwrap();
        let later = start + Duration::from_secs(8);
        registry.heartbeat(&heartbeat("broker-a", 1, 1), later);
        let expired = registry.expire(start + Duration::from_secs(11), timeout);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].broker_id, BrokerId(0));
        let route = registry.topic_route("orders").unwrap();
        assert_eq!(route.brokers[0].members.len(), 1);
        assert_eq!(route.brokers[0].members[0].broker_id, BrokerId(1));
    }
}
