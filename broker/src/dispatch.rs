//! From a decoded request frame to its handler, and from the handler's result to the
//! answer. One match over every opcode the broker serves; the handlers live in
//! [`crate::handlers`], one file per subject.
//!
//! Opcodes meant for name servers (broker registration, routes) are answered
//! [`ErrorCode::UnknownOpcode`], like numbers this build does not know, and the connection
//! stays open.

use std::rc::Rc;
use std::time::Instant;

use spillway_wire::message::UnregisterBrokerResponse;
use spillway_wire::{ErrorCode, Frame, Opcode};

use crate::connection::Connection;
use crate::handlers::{bind_shard, clients, offsets, produce, pull, topics};
use crate::refusal::Refusal;
use crate::shard::Shard;

/// Handles one request frame and answers it on `connection`.
pub async fn dispatch(shard: &Rc<Shard>, connection: &Rc<Connection>, frame: Frame) {
    let envelope = *frame.envelope();
    let opcode = match frame.opcode() {
        Ok(opcode) => opcode,
        Err(error) => {
            connection.respond::<UnregisterBrokerResponse>(shard, &envelope, Err(error.into()));
            return;
        }
    };
    match opcode {
        Opcode::Produce => {
            let started = Instant::now();
            let result = produce::produce(shard, &frame).await;
            shard.stats.record_produce(started.elapsed());
            connection.respond(shard, &envelope, result);
        }
        Opcode::Pull => {
            let result = pull::pull(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::BindShard => {
            let result = bind_shard::bind_shard(shard, &frame);
            connection.respond(shard, &envelope, result);
        }
        Opcode::CommitConsumerOffset => {
            let result = offsets::commit_consumer_offset(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::QueryConsumerOffset => {
            let result = offsets::query_consumer_offset(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::GetQueueOffsets => {
            let result = offsets::queue_offsets(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::SearchOffsetByTimestamp => {
            let result = offsets::search_offset_by_timestamp(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::CreateTopic => {
            let result = topics::create_topic(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::DeleteTopic => {
            let result = topics::delete_topic(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::ListTopics => {
            let result = topics::list_topics(shard, &frame);
            connection.respond(shard, &envelope, result);
        }
        Opcode::ClientHeartbeat => {
            let result = clients::client_heartbeat(shard, connection, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::GetConsumerGroupMembers => {
            let result = clients::consumer_group_members(shard, &frame).await;
            connection.respond(shard, &envelope, result);
        }
        Opcode::RegisterBroker
        | Opcode::BrokerHeartbeat
        | Opcode::UnregisterBroker
        | Opcode::GetTopicRoute
        | Opcode::GetClusterInfo => {
            let refusal = Refusal::new(
                ErrorCode::UnknownOpcode,
                format!("{opcode} is served by name servers, not brokers"),
            );
            connection.respond::<UnregisterBrokerResponse>(shard, &envelope, Err(refusal));
        }
        // Opcode is non_exhaustive: a newer wire crate may know more.
        #[allow(unreachable_patterns)]
        _ => {
            let refusal = Refusal::new(
                ErrorCode::UnknownOpcode,
                format!("{opcode} is not served by this broker"),
            );
            connection.respond::<UnregisterBrokerResponse>(shard, &envelope, Err(refusal));
        }
    }
}
