//! `BindShard`: a client asks that its connection be served by one shard, the owner of
//! the queues it will use through it, so its requests skip the cross-shard hop.
//!
//! The shard that accepted the connection reads its first frame; if that is a `BindShard`
//! for another existing shard, the socket moves there together with that frame and any
//! bytes read after it ([`crate::connection`]), and the new owner answers. Everything else
//! is answered where it arrives: a bind to this shard is confirmed; a bind to a shard the
//! broker does not have, or a bind that is not the connection's first request, is refused
//! (a connection moves at most once, before anything of it runs).

use spillway_wire::message::{BindShardRequest, BindShardResponse};
use spillway_wire::{ErrorCode, Frame, Opcode, ShardId};

use crate::connection::Response;
use crate::refusal::Refusal;
use crate::shard::Shard;

/// The shard a connection's first frame asks to move to: `Some` only for a well-formed
/// `BindShard` naming another shard of this broker.
pub fn move_to(shard: &Shard, first: &Frame) -> Option<ShardId> {
    if first.opcode().ok()? != Opcode::BindShard {
        return None;
    }
    let target = first.header::<BindShardRequest>().ok()?.shard.to_native();
    (target.0 != shard.id.0 && target.0 < shard.shard_count).then_some(target)
}

/// Handles `BindShard` on the shard serving the connection.
pub fn bind_shard(shard: &Shard, frame: &Frame) -> Result<Response<BindShardResponse>, Refusal> {
    let request = frame.header::<BindShardRequest>()?;
    let asked = request.shard.to_native();
    if asked.0 >= shard.shard_count {
        return Err(Refusal::new(
            ErrorCode::InvalidArgument,
            format!(
                "no shard {}: this broker has {} shards",
                asked.0, shard.shard_count
            ),
        ));
    }
    if asked.0 != shard.id.0 {
        return Err(Refusal::new(
            ErrorCode::InvalidArgument,
            format!(
                "this connection is served by shard {}: only a connection's first request \
                 can bind it to a shard",
                shard.id.0
            ),
        ));
    }
    Ok(Response::header(BindShardResponse { shard: asked }))
}
