//! Topic routes: which broker groups hold a topic, how many queues each has, and where
//! each group's members are. [`RouteTable`] asks the name servers (any of them, the next on
//! failure), caches the answer per topic and is refreshed by the client's maintenance
//! thread every `route_refresh_interval` and whenever a request suggests the route moved.
//!
//! Routes are shared as `Arc<TopicRoute>` and replaced whole, never edited, so a reader
//! holds a consistent route without a lock. A refresh that brings the same route keeps the
//! old `Arc` and leaves [`RouteTable::generation`] alone: producers compare that one number
//! on every send to learn cheaply that some route changed.
//!
//! Queue → shard is [`ShardLayout::shard_for`]; the broker routes a queue to its shard
//! itself, so a client only needs each group's address (the master, broker id 0, for
//! writes; any member for reads).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use spillway_wire::message::{
    BrokerMember, GetTopicRouteRequest, GetTopicRouteResponse, ShardLayout,
};
use spillway_wire::{BrokerId, ErrorCode, QueueId};

use crate::connection::{decode_response, ConnectionPool};
use crate::error::{ClientError, Result};
use crate::message::MessageQueue;

/// One broker group serving a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRoute {
    /// The broker group.
    pub broker_name: String,
    /// Its live members; the master has broker id 0.
    pub members: Vec<BrokerMember>,
    /// The group's shard count.
    pub shard_count: u16,
    /// The topic's queues on this group: `0..queue_count`.
    pub queue_count: u32,
    /// Which shard owns each queue.
    pub shard_layout: ShardLayout,
}

impl BrokerRoute {
    /// The master's address (writes go there), if the master is alive.
    pub fn master_address(&self) -> Option<&str> {
        self.members
            .iter()
            .find(|member| member.broker_id == BrokerId::MASTER)
            .map(|member| member.address.as_str())
    }

    /// Where to read: the master if alive, else the first replica.
    pub fn read_address(&self) -> Option<&str> {
        self.master_address()
            .or_else(|| self.members.first().map(|member| member.address.as_str()))
    }

    /// The shard owning `queue_id` on this group, as the broker computes it.
    pub fn shard_for(&self, queue_id: u32) -> Option<u16> {
        self.shard_layout
            .shard_for(QueueId(queue_id), self.shard_count)
            .map(|shard| shard.0)
    }
}

/// A topic's route: every broker group holding it, sorted by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicRoute {
    /// The topic.
    pub topic: String,
    /// The broker groups holding it, sorted by `broker_name`.
    pub brokers: Vec<BrokerRoute>,
}

impl TopicRoute {
    fn from_response(response: GetTopicRouteResponse) -> TopicRoute {
        let mut brokers: Vec<BrokerRoute> = response
            .brokers
            .into_iter()
            .map(|broker| {
                let mut members = broker.members;
                members.sort_by_key(|member| member.broker_id);
                BrokerRoute {
                    broker_name: broker.broker_name,
                    members,
                    shard_count: broker.shard_count,
                    queue_count: broker.queue_count,
                    shard_layout: broker.shard_layout,
                }
            })
            .collect();
        brokers.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        TopicRoute {
            topic: response.topic,
            brokers,
        }
    }

    /// The group named `broker_name`, if it holds the topic.
    pub fn broker(&self, broker_name: &str) -> Option<&BrokerRoute> {
        self.brokers
            .iter()
            .find(|broker| broker.broker_name == broker_name)
    }

    /// Every queue of the topic, group by group, in queue order.
    pub fn queues(&self) -> Vec<MessageQueue> {
        self.brokers
            .iter()
            .flat_map(|broker| {
                (0..broker.queue_count).map(|queue_id| MessageQueue {
                    topic: self.topic.clone(),
                    broker_name: broker.broker_name.clone(),
                    queue_id,
                })
            })
            .collect()
    }
}

/// The cache of routes, and the lookups that fill it (see the module docs).
pub(crate) struct RouteTable {
    name_servers: Vec<String>,
    routes: RwLock<HashMap<String, Arc<TopicRoute>>>,
    /// Master address of every broker group seen in any route, from the latest route.
    masters: RwLock<HashMap<String, String>>,
    generation: AtomicU64,
    next_name_server: AtomicUsize,
}

impl RouteTable {
    pub(crate) fn new(name_servers: Vec<String>) -> RouteTable {
        let start = if name_servers.is_empty() {
            0
        } else {
            rand::random::<usize>() % name_servers.len()
        };
        RouteTable {
            name_servers,
            routes: RwLock::new(HashMap::new()),
            masters: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            next_name_server: AtomicUsize::new(start),
        }
    }

    /// Grows whenever a cached route changes (or goes).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached route of `topic`, if any.
    pub(crate) fn cached(&self, topic: &str) -> Option<Arc<TopicRoute>> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .cloned()
    }

    /// The topics with a cached route.
    pub(crate) fn topics(&self) -> Vec<String> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The master address of `broker_name` as last seen in a route.
    pub(crate) fn master_address(&self, broker_name: &str) -> Option<String> {
        self.masters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(broker_name)
            .cloned()
    }

    /// Every master address seen in the cached routes.
    pub(crate) fn master_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self
            .masters
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// The name servers, starting with the next in turn (so load spreads over them).
    pub(crate) fn name_servers_in_turn(&self) -> Vec<String> {
        let count = self.name_servers.len();
        let start = self.next_name_server.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|step| self.name_servers[(start + step) % count].clone())
            .collect()
    }

    /// Asks the name servers for `topic`'s route, starting with the next in turn and
    /// moving on after a failure; caches and returns it. [`ClientError::TopicNotFound`] if
    /// every name server that answered says no broker holds it (the cached route, if any,
    /// goes).
    pub(crate) async fn fetch(
        &self,
        pool: &ConnectionPool,
        timeout: Duration,
        topic: &str,
    ) -> Result<Arc<TopicRoute>> {
        if self.name_servers.is_empty() {
            return Err(ClientError::NoNameServer);
        }
        let request = GetTopicRouteRequest {
            topic: topic.to_owned(),
        };
        let start = self.next_name_server.fetch_add(1, Ordering::Relaxed);
        let mut not_found = false;
        let mut last_error = None;
        for step in 0..self.name_servers.len() {
            let address = &self.name_servers[(start + step) % self.name_servers.len()];
            let connection = pool.get(address);
            let answer = connection.call(&request, Bytes::new(), timeout).await;
            let route = answer.and_then(|frame| {
                decode_response::<GetTopicRouteResponse>(&frame, address, "topic route")
            });
            match route {
                Ok(response) => return Ok(self.store(TopicRoute::from_response(response))),
                Err(ClientError::Broker {
                    code: ErrorCode::TopicNotFound,
                    ..
                }) => not_found = true,
                Err(error) => {
                    tracing::debug!(%address, %error, topic, "name server did not answer");
                    last_error = Some(error);
                }
            }
        }
        if not_found {
            self.forget(topic);
            return Err(ClientError::TopicNotFound {
                topic: topic.to_owned(),
            });
        }
        Err(ClientError::NameServerUnreachable {
            last_error: last_error
                .map_or_else(|| "no answer".to_owned(), |error| error.to_string()),
        })
    }

    /// Caches `route`, keeping the cached `Arc` when nothing changed.
    fn store(&self, route: TopicRoute) -> Arc<TopicRoute> {
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(cached) = routes.get(&route.topic) {
            if **cached == route {
                return cached.clone();
            }
        }
        {
            let mut masters = self.masters.write().unwrap_or_else(PoisonError::into_inner);
            for broker in &route.brokers {
                if let Some(address) = broker.master_address() {
                    masters.insert(broker.broker_name.clone(), address.to_owned());
                }
            }
        }
        let route = Arc::new(route);
        routes.insert(route.topic.clone(), route.clone());
        self.generation.fetch_add(1, Ordering::Release);
        route
    }

    fn forget(&self, topic: &str) {
        let removed = self
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(topic);
        if removed.is_some() {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_wire::message::BrokerRoute as WireBrokerRoute;

    fn response(queue_counts: &[(&str, u32, bool)]) -> GetTopicRouteResponse {
        GetTopicRouteResponse {
            topic: "orders".into(),
            brokers: queue_counts
                .iter()
                .map(|&(name, queue_count, has_master)| WireBrokerRoute {
                    broker_name: name.into(),
                    members: if has_master {
                        vec![
                            BrokerMember {
                                broker_id: BrokerId(1),
                                address: format!("{name}-replica:1"),
                            },
                            BrokerMember {
                                broker_id: BrokerId::MASTER,
                                address: format!("{name}-master:1"),
                            },
                        ]
                    } else {
                        vec![BrokerMember {
                            broker_id: BrokerId(1),
                            address: format!("{name}-replica:1"),
                        }]
                    },
                    shard_count: 2,
                    queue_count,
                    shard_layout: ShardLayout::RoundRobin,
                })
                .collect(),
        }
    }

    #[test]
    fn route_lists_groups_by_name_and_picks_master_for_writes() {
        let route = TopicRoute::from_response(response(&[("b", 2, false), ("a", 3, true)]));
        assert_eq!(route.brokers[0].broker_name, "a");
        assert_eq!(route.brokers[0].master_address(), Some("a-master:1"));
        assert_eq!(route.brokers[1].master_address(), None);
        assert_eq!(route.brokers[1].read_address(), Some("b-replica:1"));
        assert_eq!(route.brokers[0].shard_for(3), Some(1));
        let queues = route.queues();
        assert_eq!(queues.len(), 5);
        assert_eq!(
            (queues[4].broker_name.as_str(), queues[4].queue_id),
            ("b", 1)
        );
    }

    #[test]
    fn storing_the_same_route_keeps_the_generation() {
        let table = RouteTable::new(vec![]);
        let first = table.store(TopicRoute::from_response(response(&[("a", 3, true)])));
        let generation = table.generation();
        let same = table.store(TopicRoute::from_response(response(&[("a", 3, true)])));
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(table.generation(), generation);
        table.store(TopicRoute::from_response(response(&[("a", 4, true)])));
        assert!(table.generation() > generation);
        assert_eq!(table.master_address("a").as_deref(), Some("a-master:1"));
        table.forget("orders");
        assert!(table.cached("orders").is_none());
    }
}
