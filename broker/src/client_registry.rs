//! [`ClientRegistry`]: which clients are alive and which consumer groups they are in, as
//! one broker sees them, so that `GetConsumerGroupMembers` can answer every member of a group
//! with the same sorted list (from which each computes its share of the queues).
//!
//! # Model
//!
//! A client heartbeats (`ClientHeartbeat`) on any of its connections, to any shard. Shard 0
//! owns this registry; heartbeats arriving on other shards are forwarded to it, tagged with
//! the [`ConnectionKey`] (shard, connection serial) they came on. Each heartbeat *replaces*
//! the client's group list: a group it no longer names loses it at once. A client leaves
//! every group when
//!
//! * every connection it heartbeated on has closed ([`ClientRegistry::connection_closed`]),
//!   so a consumer that exits cleanly leaves at once, and one that reconnects (a new
//!   connection heartbeats before the old one is noticed closed) never leaves; or
//! * it has been silent longer than the client timeout ([`ClientRegistry::expire`]), which
//!   covers a client whose connections hang without closing.
//!
//! Producer groups are not tracked: nothing on the broker asks for them yet.
//!
//! # What it must never do
//!
//! It is pure: no I/O, no channels, no clock. Every call that depends on time takes `now`,
//! so expiry is tested with an injected clock. A refused heartbeat changes nothing.
//!
//! # Limits
//!
//! Client ids and group names are 1 to [`MAX_CLIENT_ID_BYTES`] / [`MAX_GROUP_NAME_BYTES`]
//! bytes, a client is in at most [`MAX_GROUPS_PER_CLIENT`] consumer groups with at most
//! [`MAX_SUBSCRIPTIONS_PER_GROUP`] subscriptions each (topics of 1 to
//! [`MAX_TOPIC_BYTES`] bytes, tag expressions of at most [`MAX_TAG_EXPRESSION_BYTES`]), and
//! the registry holds at most `max_clients` clients: a new client beyond that is refused
//! ([`ErrorCode::TooManyRequests`]), a live one is never evicted to make room. A heartbeat
//! as a whole is also bounded by the frame it arrives in. The number of connections a
//! client is tracked on is bounded by the broker's connection limits, since a closed
//! connection is forgotten.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use spillway_storage::record::MAX_TOPIC_BYTES;
use spillway_wire::message::{
    ArchivedClientHeartbeatRequest, ArchivedConsumeMode, ConsumeMode, ConsumerGroupMembership,
    Subscription,
};
use spillway_wire::ErrorCode;

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 255;
/// Longest consumer group name, in bytes.
pub const MAX_GROUP_NAME_BYTES: usize = 255;
/// Most consumer groups one client may be in.
pub const MAX_GROUPS_PER_CLIENT: usize = 64;
/// Most subscriptions per consumer group in one heartbeat.
pub const MAX_SUBSCRIPTIONS_PER_GROUP: usize = 256;
/// Longest tag expression of a subscription, in bytes.
pub const MAX_TAG_EXPRESSION_BYTES: usize = 1024;

/// Identifies one client connection of the broker: the shard that accepted it and a serial
/// number unique on that shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionKey {
    /// The shard the connection belongs to.
    pub shard: u16,
    /// Unique among that shard's connections (never reused while the broker runs).
    pub serial: u64,
}

/// What a client's heartbeat says, owned: the server converts the validated in-place header
/// with [`ClientHeartbeat::from_archived`] (on the shard that received it) and hands it to
/// shard 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHeartbeat {
    /// The client, unique per client process.
    pub client_id: String,
    /// Every consumer group it is in, with how the group consumes and what it reads.
    pub consumer_groups: Vec<ConsumerGroupMembership>,
}

impl ClientHeartbeat {
    /// The owned form of a validated, in-place heartbeat header. Copies everything (bounded
    /// by the frame it came in); the limits are checked by [`ClientRegistry::heartbeat`].
    pub fn from_archived(request: &ArchivedClientHeartbeatRequest) -> ClientHeartbeat {
        ClientHeartbeat {
            client_id: request.client_id.as_str().to_owned(),
            consumer_groups: request
                .consumer_groups
                .iter()
                .map(|group| ConsumerGroupMembership {
                    consumer_group: group.consumer_group.as_str().to_owned(),
                    consume_mode: match group.consume_mode {
                        ArchivedConsumeMode::Clustering => ConsumeMode::Clustering,
                        ArchivedConsumeMode::Broadcasting => ConsumeMode::Broadcasting,
                    },
                    subscriptions: group
                        .subscriptions
                        .iter()
                        .map(|subscription| Subscription {
                            topic: subscription.topic.as_str().to_owned(),
                            tag_expression: subscription.tag_expression.as_str().to_owned(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Why a heartbeat was refused. Nothing of a refused heartbeat is applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientRegistryError {
    /// The client id is empty or too long (not echoed: it may be anything).
    #[error("client id of {bytes} bytes: 1 to {MAX_CLIENT_ID_BYTES} bytes are allowed")]
    BadClientId {
        /// Its length.
        bytes: usize,
    },
    /// A consumer group name is empty or too long.
    #[error(
        "client {client_id}: consumer group #{index} has a name of {bytes} bytes; 1 to \
         {MAX_GROUP_NAME_BYTES} bytes are allowed"
    )]
    BadGroupName {
        /// The client.
        client_id: String,
        /// Position of the group in the heartbeat.
        index: usize,
        /// The name's length.
        bytes: usize,
    },
    /// The same consumer group is named twice.
    #[error("client {client_id}: consumer group {group} is listed twice")]
    DuplicateGroup {
        /// The client.
        client_id: String,
        /// The group.
        group: String,
    },
    /// More consumer groups than [`MAX_GROUPS_PER_CLIENT`].
    #[error(
        "client {client_id} is in {groups} consumer groups; at most {MAX_GROUPS_PER_CLIENT} \
         are allowed"
    )]
    TooManyGroups {
        /// The client.
        client_id: String,
        /// How many it named.
        groups: usize,
    },
    /// More subscriptions in one group than [`MAX_SUBSCRIPTIONS_PER_GROUP`].
    #[error(
        "client {client_id}: consumer group {group} has {subscriptions} subscriptions; at \
         most {MAX_SUBSCRIPTIONS_PER_GROUP} are allowed"
    )]
    TooManySubscriptions {
        /// The client.
        client_id: String,
        /// The group.
        group: String,
        /// How many it named.
        subscriptions: usize,
    },
    /// A subscription's topic or tag expression is out of bounds.
    #[error("client {client_id}: consumer group {group}, subscription #{index}: {reason}")]
    BadSubscription {
        /// The client.
        client_id: String,
        /// The group.
        group: String,
        /// Position of the subscription in the group.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The registry holds `max_clients` clients and this one is new.
    #[error("the broker already tracks its limit of {max_clients} clients")]
    TooManyClients {
        /// The limit.
        max_clients: usize,
    },
}

impl ClientRegistryError {
    /// The code the broker answers the heartbeat with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ClientRegistryError::TooManyClients { .. } => ErrorCode::TooManyRequests,
            ClientRegistryError::BadClientId { .. }
            | ClientRegistryError::BadGroupName { .. }
            | ClientRegistryError::DuplicateGroup { .. }
            | ClientRegistryError::TooManyGroups { .. }
            | ClientRegistryError::TooManySubscriptions { .. }
            | ClientRegistryError::BadSubscription { .. } => ErrorCode::InvalidArgument,
        }
    }
}

/// One live client.
#[derive(Debug)]
struct Client {
    /// As last heartbeated, in the client's order.
    consumer_groups: Vec<ConsumerGroupMembership>,
    /// Every open connection it heartbeated on.
    connections: HashSet<ConnectionKey>,
    last_heartbeat: Instant,
}

/// Live clients and consumer group membership. See the module docs.
#[derive(Debug)]
pub struct ClientRegistry {
    /// By client id.
    clients: HashMap<String, Client>,
    /// Consumer group → its members' ids, sorted. A group with no member is removed.
    groups: BTreeMap<String, BTreeSet<String>>,
    /// Connection → the clients that heartbeated on it.
    connections: HashMap<ConnectionKey, HashSet<String>>,
    max_clients: usize,
}

impl ClientRegistry {
    /// An empty registry tracking at most `max_clients` clients.
    pub fn new(max_clients: usize) -> ClientRegistry {
        ClientRegistry {
            clients: HashMap::new(),
            groups: BTreeMap::new(),
            connections: HashMap::new(),
            max_clients,
        }
    }

    /// How many clients are tracked.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Records a heartbeat received at `now` on `connection`: the client is alive, is in
    /// exactly the groups the heartbeat names (it leaves any other), and stays until every
    /// connection it heartbeated on has closed or it falls silent. A refused heartbeat
    /// changes nothing.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        connection: ConnectionKey,
        heartbeat: ClientHeartbeat,
    ) -> Result<(), ClientRegistryError> {
        validate(&heartbeat)?;
        let ClientHeartbeat {
            client_id,
            consumer_groups,
        } = heartbeat;
        if !self.clients.contains_key(&client_id) && self.clients.len() >= self.max_clients {
            return Err(ClientRegistryError::TooManyClients {
                max_clients: self.max_clients,
            });
        }
        let client = self
            .clients
            .entry(client_id.clone())
            .or_insert_with(|| Client {
                consumer_groups: Vec::new(),
                connections: HashSet::new(),
                last_heartbeat: now,
            });
        // A heartbeat "from the past" (forwarded late from another shard) does not move the
        // last heartbeat back.
        client.last_heartbeat = client.last_heartbeat.max(now);
        if client.connections.insert(connection) {
            self.connections
                .entry(connection)
                .or_default()
                .insert(client_id.clone());
        }
        let previous = std::mem::replace(&mut client.consumer_groups, consumer_groups);
        for group in &previous {
            let still_in = client
                .consumer_groups
                .iter()
                .any(|kept| kept.consumer_group == group.consumer_group);
            if !still_in {
                leave_group(&mut self.groups, &group.consumer_group, &client_id);
            }
        }
        for group in &client.consumer_groups {
            if let Some(members) = self.groups.get_mut(&group.consumer_group) {
                members.insert(client_id.clone());
            } else {
                self.groups.insert(
                    group.consumer_group.clone(),
                    BTreeSet::from([client_id.clone()]),
                );
            }
        }
        Ok(())
    }

    /// The ids of the live members of consumer group `group`, sorted (empty if none).
    pub fn members(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|members| members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The consumer groups `client_id` is in, as it last heartbeated them, if it is live.
    pub fn memberships(&self, client_id: &str) -> Option<&[ConsumerGroupMembership]> {
        self.clients
            .get(client_id)
            .map(|client| client.consumer_groups.as_slice())
    }

    /// Forgets `connection`; a client none of whose heartbeat connections is still open is
    /// removed. Returns the removed client ids, sorted.
    pub fn connection_closed(&mut self, connection: ConnectionKey) -> Vec<String> {
        let Some(client_ids) = self.connections.remove(&connection) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for client_id in client_ids {
            let Some(client) = self.clients.get_mut(&client_id) else {
                continue;
            };
            client.connections.remove(&connection);
            if client.connections.is_empty() {
                self.remove_client(&client_id);
                removed.push(client_id);
            }
        }
        removed.sort();
        removed
    }

    /// Removes every client whose last heartbeat is more than `timeout` before `now`.
    /// Returns the removed client ids, sorted.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let mut expired: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, client)| now.saturating_duration_since(client.last_heartbeat) > timeout)
            .map(|(client_id, _)| client_id.clone())
            .collect();
        for client_id in &expired {
            self.remove_client(client_id);
        }
        expired.sort();
        expired
    }

    /// Removes a client from its groups and its connections.
    fn remove_client(&mut self, client_id: &str) {
        let Some(client) = self.clients.remove(client_id) else {
            return;
        };
        for group in &client.consumer_groups {
            leave_group(&mut self.groups, &group.consumer_group, client_id);
        }
        for connection in &client.connections {
            if let Some(client_ids) = self.connections.get_mut(connection) {
                client_ids.remove(client_id);
                if client_ids.is_empty() {
                    self.connections.remove(connection);
                }
            }
        }
    }
}

/// Removes `client_id` from `group`, and the group once empty.
fn leave_group(groups: &mut BTreeMap<String, BTreeSet<String>>, group: &str, client_id: &str) {
    if let Some(members) = groups.get_mut(group) {
        members.remove(client_id);
        if members.is_empty() {
            groups.remove(group);
        }
    }
}

/// Checks every limit of a heartbeat.
fn validate(heartbeat: &ClientHeartbeat) -> Result<(), ClientRegistryError> {
    let client_id = &heartbeat.client_id;
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID_BYTES {
        return Err(ClientRegistryError::BadClientId {
            bytes: client_id.len(),
        });
    }
    let groups = &heartbeat.consumer_groups;
    if groups.len() > MAX_GROUPS_PER_CLIENT {
        return Err(ClientRegistryError::TooManyGroups {
            client_id: client_id.clone(),
            groups: groups.len(),
        });
    }
    let mut names = HashSet::with_capacity(groups.len());
    for (index, group) in groups.iter().enumerate() {
        let name = &group.consumer_group;
        if name.is_empty() || name.len() > MAX_GROUP_NAME_BYTES {
            return Err(ClientRegistryError::BadGroupName {
                client_id: client_id.clone(),
                index,
                bytes: name.len(),
            });
        }
        if !names.insert(name.as_str()) {
            return Err(ClientRegistryError::DuplicateGroup {
                client_id: client_id.clone(),
                group: name.clone(),
            });
        }
        if group.subscriptions.len() > MAX_SUBSCRIPTIONS_PER_GROUP {
            return Err(ClientRegistryError::TooManySubscriptions {
                client_id: client_id.clone(),
                group: name.clone(),
                subscriptions: group.subscriptions.len(),
            });
        }
        for (index, subscription) in group.subscriptions.iter().enumerate() {
            let topic_bytes = subscription.topic.len();
            let tag_bytes = subscription.tag_expression.len();
            let reason = if topic_bytes == 0 || topic_bytes > MAX_TOPIC_BYTES {
                format!("a topic of {topic_bytes} bytes; 1 to {MAX_TOPIC_BYTES} are allowed")
            } else if tag_bytes > MAX_TAG_EXPRESSION_BYTES {
                format!(
                    "a tag expression of {tag_bytes} bytes; at most {MAX_TAG_EXPRESSION_BYTES} \
                     are allowed"
                )
            } else {
                continue;
            };
            return Err(ClientRegistryError::BadSubscription {
                client_id: client_id.clone(),
                group: name.clone(),
                index,
                reason,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use spillway_wire::message::ClientHeartbeatRequest;
    use spillway_wire::{Envelope, FrameDecoder, FrameEncoder, Opcode, RequestId};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn connection(shard: u16, serial: u64) -> ConnectionKey {
        ConnectionKey { shard, serial }
    }

    fn group(name: &str) -> ConsumerGroupMembership {
        ConsumerGroupMembership {
            consumer_group: name.into(),
            consume_mode: ConsumeMode::Clustering,
            subscriptions: vec![Subscription {
                topic: "orders".into(),
                tag_expression: "*".into(),
            }],
        }
    }

    fn heartbeat(client_id: &str, groups: &[&str]) -> ClientHeartbeat {
        ClientHeartbeat {
            client_id: client_id.into(),
            consumer_groups: groups.iter().map(|name| group(name)).collect(),
        }
    }

    #[test]
    fn clients_join_groups_and_members_are_sorted() {
        let mut registry = ClientRegistry::new(16);
        let now = Instant::now();
        for (serial, client) in ["c@3", "a@1", "b@2"].into_iter().enumerate() {
            registry
                .heartbeat(
                    now,
                    connection(0, serial as u64),
                    heartbeat(client, &["billing"]),
                )
                .unwrap();
        }
        registry
            .heartbeat(
                now,
                connection(1, 0),
                heartbeat("d@4", &["audit", "billing"]),
            )
            .unwrap();
        assert_eq!(registry.members("billing"), ["a@1", "b@2", "c@3", "d@4"]);
        assert_eq!(registry.members("audit"), ["d@4"]);
        assert!(registry.members("nobody").is_empty());
        assert_eq!(registry.len(), 4);
        assert_eq!(
            registry.memberships("d@4").map(|groups| groups.len()),
            Some(2)
        );
    }

    #[test]
    fn a_heartbeat_with_other_groups_leaves_the_old_ones() {
        let mut registry = ClientRegistry::new(16);
        let now = Instant::now();
        let on = connection(0, 1);
        registry
            .heartbeat(now, on, heartbeat("a", &["billing", "audit"]))
            .unwrap();
        registry
            .heartbeat(now, on, heartbeat("b", &["billing"]))
            .unwrap();
        registry
            .heartbeat(now, on, heartbeat("a", &["shipping"]))
            .unwrap();
        assert_eq!(registry.members("billing"), ["b"]);
        assert!(registry.members("audit").is_empty());
        assert_eq!(registry.members("shipping"), ["a"]);
        // No groups at all: still a live client, in no group.
        registry.heartbeat(now, on, heartbeat("a", &[])).unwrap();
        assert!(registry.members("shipping").is_empty());
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn a_client_leaves_when_its_last_connection_closes() {
        let mut registry = ClientRegistry::new(16);
        let now = Instant::now();
        let first = connection(0, 1);
        let second = connection(3, 1);
        registry
            .heartbeat(now, first, heartbeat("a", &["billing"]))
            .unwrap();
        registry
            .heartbeat(now, second, heartbeat("a", &["billing"]))
            .unwrap();
        registry
            .heartbeat(now, second, heartbeat("b", &["billing"]))
            .unwrap();
        // Closing one of a's two connections keeps a; it removes nobody.
        assert!(registry.connection_closed(first).is_empty());
        assert_eq!(registry.members("billing"), ["a", "b"]);
        // Closing the other removes both clients that used it.
        assert_eq!(registry.connection_closed(second), ["a", "b"]);
        assert!(registry.members("billing").is_empty());
        assert!(registry.is_empty());
        // Unknown or already closed connections are nothing to do.
        assert!(registry.connection_closed(second).is_empty());
        assert!(registry.connection_closed(connection(9, 9)).is_empty());
        assert!(registry.connections.is_empty());
        assert!(registry.groups.is_empty());
    }

    #[test]
    fn silent_clients_expire_and_heartbeats_keep_clients_alive() {
        let mut registry = ClientRegistry::new(16);
        let start = Instant::now();
        let on = connection(0, 1);
        registry
            .heartbeat(start, on, heartbeat("quiet", &["billing"]))
            .unwrap();
        registry
            .heartbeat(start, on, heartbeat("chatty", &["billing"]))
            .unwrap();
        registry
            .heartbeat(start + TIMEOUT, on, heartbeat("chatty", &["billing"]))
            .unwrap();
        // Exactly at the timeout: still alive.
        assert!(registry.expire(start + TIMEOUT, TIMEOUT).is_empty());
        let later = start + TIMEOUT + Duration::from_millis(1);
        assert_eq!(registry.expire(later, TIMEOUT), ["quiet"]);
        assert_eq!(registry.members("billing"), ["chatty"]);
        // A late (older) heartbeat does not move the last heartbeat back.
        registry
            .heartbeat(start, on, heartbeat("chatty", &["billing"]))
            .unwrap();
        assert!(registry.expire(later + TIMEOUT / 2, TIMEOUT).is_empty());
        // The expired client's connection bookkeeping is gone too.
        assert_eq!(registry.connections[&on].len(), 1);
        assert_eq!(registry.connection_closed(on), ["chatty"]);
    }

    #[test]
    fn the_client_limit_refuses_new_clients_only() {
        let mut registry = ClientRegistry::new(2);
        let now = Instant::now();
        let on = connection(0, 1);
        registry.heartbeat(now, on, heartbeat("a", &["g"])).unwrap();
        registry.heartbeat(now, on, heartbeat("b", &["g"])).unwrap();
        let refused = registry.heartbeat(now, on, heartbeat("c", &["g"]));
        assert_eq!(
            refused,
            Err(ClientRegistryError::TooManyClients { max_clients: 2 })
        );
        assert_eq!(
            refused.unwrap_err().error_code(),
            ErrorCode::TooManyRequests
        );
        // Known clients still heartbeat.
        registry
            .heartbeat(now, on, heartbeat("a", &["g", "h"]))
            .unwrap();
        assert_eq!(registry.members("g"), ["a", "b"]);
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn heartbeats_outside_the_limits_are_refused_and_change_nothing() {
        let mut registry = ClientRegistry::new(16);
        let now = Instant::now();
        let on = connection(0, 1);
        registry
            .heartbeat(now, on, heartbeat("a", &["billing"]))
            .unwrap();
        let long_name = "g".repeat(MAX_GROUP_NAME_BYTES + 1);
        let many_groups: Vec<String> = (0..=MAX_GROUPS_PER_CLIENT)
            .map(|index| format!("g{index}"))
            .collect();
        let many_group_names: Vec<&str> = many_groups.iter().map(String::as_str).collect();
        let mut too_many_subscriptions = heartbeat("a", &["billing"]);
        too_many_subscriptions.consumer_groups[0].subscriptions =
            vec![group("x").subscriptions[0].clone(); MAX_SUBSCRIPTIONS_PER_GROUP + 1];
        let mut empty_topic = heartbeat("a", &["billing"]);
        empty_topic.consumer_groups[0].subscriptions[0]
            .topic
            .clear();
        let mut long_tags = heartbeat("a", &["billing"]);
        long_tags.consumer_groups[0].subscriptions[0].tag_expression =
            "t".repeat(MAX_TAG_EXPRESSION_BYTES + 1);

        let refusals = [
            heartbeat("", &["billing"]),
            heartbeat(&"c".repeat(MAX_CLIENT_ID_BYTES + 1), &["billing"]),
            heartbeat("a", &[""]),
            heartbeat("a", &[&long_name]),
            heartbeat("a", &["billing", "billing"]),
            heartbeat("a", &many_group_names),
            too_many_subscriptions,
            empty_topic,
            long_tags,
        ];
        for refused in refusals {
            let error = registry
                .heartbeat(now, connection(5, 5), refused.clone())
                .expect_err("refused");
            assert_eq!(error.error_code(), ErrorCode::InvalidArgument, "{error}");
        }
        assert_eq!(registry.members("billing"), ["a"]);
        assert_eq!(registry.len(), 1);
        // The refused heartbeats' connection was not recorded.
        assert!(registry.connection_closed(connection(5, 5)).is_empty());
        assert_eq!(registry.members("billing"), ["a"]);

        // Exactly at every limit: accepted.
        let mut at_limits = heartbeat(
            &"c".repeat(MAX_CLIENT_ID_BYTES),
            &many_group_names[..MAX_GROUPS_PER_CLIENT],
        );
        at_limits.consumer_groups[0].consumer_group = "g".repeat(MAX_GROUP_NAME_BYTES);
        at_limits.consumer_groups[0].subscriptions = vec![
            Subscription {
                topic: "t".repeat(MAX_TOPIC_BYTES),
                tag_expression: "x".repeat(MAX_TAG_EXPRESSION_BYTES),
            };
            MAX_SUBSCRIPTIONS_PER_GROUP
        ];
        registry.heartbeat(now, on, at_limits).unwrap();
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn from_archived_copies_the_header() {
        let request = ClientHeartbeatRequest {
            client_id: "host@42@1".into(),
            producer_groups: vec!["checkout".into()],
            consumer_groups: vec![
                group("billing"),
                ConsumerGroupMembership {
                    consumer_group: "cache".into(),
                    consume_mode: ConsumeMode::Broadcasting,
                    subscriptions: vec![],
                },
            ],
        };
        let mut buffer = BytesMut::new();
        FrameEncoder::new()
            .encode(
                &mut buffer,
                Envelope::request(Opcode::ClientHeartbeat, RequestId(1)),
                &request,
                &[],
            )
            .unwrap();
        let frame = FrameDecoder::new().decode(&mut buffer).unwrap().unwrap();
        let archived = frame.header::<ClientHeartbeatRequest>().unwrap();
        assert_eq!(
            ClientHeartbeat::from_archived(archived),
            ClientHeartbeat {
                client_id: request.client_id,
                consumer_groups: request.consumer_groups,
            }
        );
    }
}
