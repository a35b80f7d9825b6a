//! Client heartbeats and consumer group membership, kept on shard 0 for the whole broker.
//!
//! Consumers of a clustering group split the queues among the group's members, so they
//! need one answer to "who is in the group": shard 0's [`crate::client_registry`]. A
//! heartbeat arriving on any shard is forwarded there with the connection it came on; when
//! that connection closes, shard 0 hears of it and the client leaves at once (a crashed
//! consumer's socket is closed by its kernel), and a client silent for `client_timeout_ms`
//! is dropped by [`expire_clients`].

use std::rc::Rc;
use std::time::{Duration, Instant};

use spillway_wire::message::{
    ClientHeartbeatRequest, ClientHeartbeatResponse, GetConsumerGroupMembersRequest,
    GetConsumerGroupMembersResponse,
};
use spillway_wire::{Frame, ShardId};

use crate::client_registry::{ClientHeartbeat, ConnectionKey};
use crate::connection::{Connection, Response};
use crate::refusal::Refusal;
use crate::shard::Shard;

/// Handles `ClientHeartbeat`.
pub async fn client_heartbeat(
    shard: &Rc<Shard>,
    connection: &Rc<Connection>,
    frame: &Frame,
) -> Result<Response<ClientHeartbeatResponse>, Refusal> {
    let request = frame.header::<ClientHeartbeatRequest>()?;
    let heartbeat = ClientHeartbeat::from_archived(request);
    let key = connection.key;
    connection.heartbeated.set(true);
    shard
        .run_on(ShardId(0), move |shard| async move {
            let Some(clients) = &shard.clients else {
                return Err(Refusal::unavailable("no client registry on this shard"));
            };
            clients
                .borrow_mut()
                .heartbeat(Instant::now(), key, heartbeat)
                .map_err(|error| Refusal::new(error.error_code(), error.to_string()))
        })
        .await??;
    Ok(Response::header(ClientHeartbeatResponse {}))
}

/// Handles `GetConsumerGroupMembers`.
pub async fn consumer_group_members(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<GetConsumerGroupMembersResponse>, Refusal> {
    let request = frame.header::<GetConsumerGroupMembersRequest>()?;
    let group = request.consumer_group.as_str().to_owned();
    let client_ids = shard
        .run_on(ShardId(0), move |shard| async move {
            shard
                .clients
                .as_ref()
                .map(|clients| clients.borrow().members(&group))
                .unwrap_or_default()
        })
        .await?;
    Ok(Response::header(GetConsumerGroupMembersResponse {
        client_ids,
    }))
}

/// Shard 0: a connection that carried heartbeats closed.
pub fn connection_closed(shard: &Shard, key: ConnectionKey) {
    if let Some(clients) = &shard.clients {
        let removed = clients.borrow_mut().connection_closed(key);
        if !removed.is_empty() {
            tracing::info!(?removed, "clients left (connection closed)");
        }
    }
}

/// Shard 0: drops silent clients, checking a few times per timeout, forever.
pub async fn expire_clients(shard: Rc<Shard>) {
    let timeout = Duration::from_millis(shard.config.client_timeout_ms);
    let Some(clients) = &shard.clients else {
        return;
    };
    loop {
        glommio::timer::sleep((timeout / 4).max(Duration::from_millis(10))).await;
        let removed = clients.borrow_mut().expire(Instant::now(), timeout);
        if !removed.is_empty() {
            tracing::info!(?removed, "clients left (silent for client_timeout_ms)");
        }
    }
}
