//! Clustering rebalance: who is in a consumer group ([`group_members`]) and which queues
//! each member takes ([`allocate_average`]).
//!
//! There is no coordinator. Every member heartbeats its group to every master of the
//! topic's route, asks those brokers for the group's members, and computes the whole
//! group's assignment from two sorted lists, the members and the queues, so members that
//! see the same lists agree without talking to each other. Lists seen at different
//! moments can disagree for a heartbeat or two (a member joining is known to one member
//! before the other); the split settles once every member has rebalanced with the same
//! list.
//!
//! Several broker groups: each keeps its own member list (a client heartbeats each of
//! them), so the members are the *union* of the lists of the brokers that answered. A
//! broker that does not answer is left out of that round; a member known only to that
//! broker is still known to the others as long as it heartbeats them.
//!
//! This module owns no state and never changes what a consumer reads: the push consumer
//! applies the assignment (`push_consumer.rs`).

use std::collections::BTreeSet;

use spillway_wire::message::{GetConsumerGroupMembersRequest, GetConsumerGroupMembersResponse};

use crate::client::ClientInner;
use crate::connection::{decode_response, Reply};
use crate::error::{ClientError, Result};
use crate::message::MessageQueue;
use crate::route::TopicRoute;

/// RocketMQ's "average" strategy: the sorted queues are cut into contiguous ranges, one per
/// member in sorted order; the ranges differ in size by at most one, the larger ones
/// first. Returns `client_id`'s range, sorted; nothing if it is not among `members`.
/// Both lists are sorted (and deduplicated) here, so every member gets the same answer
/// whatever order it learnt them in.
pub fn allocate_average(
    queues: &[MessageQueue],
    members: &[String],
    client_id: &str,
) -> Vec<MessageQueue> {
    let queues: Vec<&MessageQueue> = queues.iter().collect::<BTreeSet<_>>().into_iter().collect();
    let members: Vec<&str> = members
        .iter()
        .map(String::as_str)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let Some(index) = members.iter().position(|member| *member == client_id) else {
        return Vec::new();
    };
    let (start, count) = average_range(queues.len(), members.len(), index);
    queues[start..start + count]
        .iter()
        .map(|queue| (*queue).clone())
        .collect()
}

/// The range (`start`, `count`) of `queue_count` queues that member `index` of
/// `member_count` takes.
fn average_range(queue_count: usize, member_count: usize, index: usize) -> (usize, usize) {
    assert!(index < member_count, "member {index} of {member_count}");
    let base = queue_count / member_count;
    let larger = queue_count % member_count;
    if index < larger {
        (index * (base + 1), base + 1)
    } else {
        (larger * (base + 1) + (index - larger) * base, base)
    }
}

/// The members of `consumer_group` as the masters of `route` see them: the union of their
/// sorted lists. Asks every master at once. Fails only if none answered (with the first
/// failure), or if the route has no master at all.
pub(crate) async fn group_members(
    client: &ClientInner,
    route: &TopicRoute,
    consumer_group: &str,
) -> Result<Vec<String>> {
    let request = GetConsumerGroupMembersRequest {
        consumer_group: consumer_group.to_owned(),
    };
    let mut addresses: Vec<&str> = route
        .brokers
        .iter()
        .filter_map(|broker| broker.master_address())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    let mut answers = Vec::with_capacity(addresses.len());
    let mut first_error = None;
    for address in addresses {
        let connection = client.pool.get(address);
        let permit = connection.permit().await;
        let (reply, answer) = flume::bounded(1);
        match connection.send(
            &request,
            Vec::new(),
            client.config.request_timeout,
            Reply::Oneshot(reply),
            permit,
        ) {
            Ok(()) => answers.push((address, answer)),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let mut members = BTreeSet::new();
    let mut answered = false;
    for (address, answer) in answers {
        let result = answer
            .recv_async()
            .await
            .map_err(|_| ClientError::Closed)
            .and_then(|frame| frame)
            .and_then(|frame| {
                decode_response::<GetConsumerGroupMembersResponse>(
                    &frame,
                    address,
                    "consumer group members",
                )
            });
        match result {
            Ok(response) => {
                answered = true;
                members.extend(response.client_ids);
            }
            Err(error) => {
                tracing::debug!(%address, %error, consumer_group, "no member list from this broker");
                first_error.get_or_insert(error);
            }
        }
    }
    if answered {
        return Ok(members.into_iter().collect());
    }
    Err(first_error.unwrap_or(ClientError::BrokerUnavailable {
        topic: route.topic.clone(),
        broker_name: String::new(),
        reason: "the route names no master to ask for the group's members",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(count: u32) -> Vec<MessageQueue> {
        // Two broker groups, listed out of order.
        (0..count)
            .rev()
            .map(|index| MessageQueue::new("orders", ["b", "a"][index as usize % 2], index / 2))
            .collect()
    }

    fn members(count: usize) -> Vec<String> {
        (0..count)
            .rev()
            .map(|index| format!("client-{index:02}"))
            .collect()
    }

    #[test]
    fn ranges_match_rocketmq_average() {
        // 8 queues over 3 members: 3, 3, 2.
        assert_eq!(average_range(8, 3, 0), (0, 3));
        assert_eq!(average_range(8, 3, 1), (3, 3));
        assert_eq!(average_range(8, 3, 2), (6, 2));
        // More members than queues: the last ones get nothing.
        assert_eq!(average_range(2, 3, 1), (1, 1));
        assert_eq!(average_range(2, 3, 2), (2, 0));
        assert_eq!(average_range(0, 1, 0), (0, 0));
    }

    #[test]
    fn every_queue_goes_to_exactly_one_member_in_contiguous_ranges() {
        for queue_count in 0..20 {
            for member_count in 1..8 {
                let queues = queues(queue_count);
                let members = members(member_count);
                let mut sorted = queues.clone();
                sorted.sort();
                let mut seen = Vec::new();
                let mut sizes = Vec::new();
                for member in &members {
                    let mine = allocate_average(&queues, &members, member);
                    sizes.push(mine.len());
                    seen.extend(mine);
                }
                // Members sort as client-00, client-01, ...; `members` lists them in
                // reverse, so concatenating by sorted member gives the sorted queues.
                let mut by_sorted_member: Vec<MessageQueue> = Vec::new();
                let mut sorted_members = members.clone();
                sorted_members.sort();
                for member in &sorted_members {
                    by_sorted_member.extend(allocate_average(&queues, &members, member));
                }
                assert_eq!(
                    by_sorted_member, sorted,
                    "{queue_count} over {member_count}"
                );
                seen.sort();
                assert_eq!(seen, sorted);
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.unwrap() - min.unwrap() <= 1, "{sizes:?}");
            }
        }
    }

    #[test]
    fn a_stranger_gets_nothing_and_order_of_input_does_not_matter() {
        let queues = queues(6);
        let members = members(2);
        assert!(allocate_average(&queues, &members, "someone-else").is_empty());
        let mut shuffled = queues.clone();
        shuffled.swap(0, 5);
        shuffled.swap(1, 3);
        assert_eq!(
            allocate_average(&shuffled, &members, "client-00"),
            allocate_average(&queues, &members, "client-00")
        );
        let mine = allocate_average(&queues, &members, "client-00");
        assert_eq!(
            mine.iter()
                .map(|queue| (queue.broker_name.as_str(), queue.queue_id))
                .collect::<Vec<_>>(),
            [("a", 0), ("a", 1), ("a", 2)]
        );
    }
}
