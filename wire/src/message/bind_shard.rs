//! Binding a connection to one shard ([`Opcode::BindShard`](crate::Opcode)).
//!
//! Every shard of a broker accepts on the same port, and the kernel picks which one gets a
//! new connection. A request for a queue of another shard then crosses to its owner and
//! back. A client that knows the `queue -> shard` layout (from the route) instead opens
//! one connection per shard and sends `BindShard` as the first request of each: the shard
//! that accepted hands the socket to the named shard, which answers. The answer names the
//! shard that now serves the connection.

use rkyv::{Archive, Deserialize, Serialize};

use crate::ids::ShardId;

/// Bind shard request header.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BindShardRequest {
    /// The shard that should serve the connection.
    pub shard: ShardId,
}

/// Bind shard response header.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[rkyv(derive(Debug))]
pub struct BindShardResponse {
    /// The shard serving the connection from now on (the one asked for).
    pub shard: ShardId,
}

#[cfg(test)]
pub(super) fn samples(samples: &mut super::test_support::Samples) {
    samples.add(BindShardRequest { shard: ShardId(1) });
    samples.add(BindShardResponse { shard: ShardId(1) });
}

#[cfg(test)]
mod tests {
    #[test]
    fn bind_shard_headers_round_trip() {
        let mut collected = super::super::test_support::Samples::default();
        super::samples(&mut collected);
        assert_eq!(collected.frames.len(), 2);
    }
}
