//! [`Opcode`]: which operation a frame is about, one number per request type.
//!
//! A response carries the opcode of its request. Numbers are stable like error codes: **an
//! opcode's number never changes and is never reused**; new operations get new numbers in
//! their group. 0 is never an opcode (connection-level error responses carry 0).
//!
//! | range | group |
//! |---|---|
//! | 1xx | data path: produce, pull |
//! | 2xx | offsets: consumer offsets, queue offsets, timestamp search |
//! | 3xx | topic administration |
//! | 4xx | cluster: broker registration with name servers, routes |
//! | 5xx | clients: heartbeats, consumer group membership |
//!
//! An unknown number is not a broken frame: the receiver answers it with
//! [`crate::ErrorCode::UnknownOpcode`] and keeps the connection.

use std::fmt;

/// The operation of a frame. See the module docs for the numbering rules; the request and
/// response header types are named after the variant (`Produce` → `ProduceRequest`,
/// `ProduceResponse`).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Opcode {
    /// Append record batches to one or more queues. Client → broker (master).
    Produce = 100,
    /// Read records of one queue from an offset, waiting up to a time for new ones.
    /// Client → broker.
    Pull = 101,
    /// Have the connection served by one shard of the broker: the shard owning the
    /// queues the client will use there, so its requests skip the cross-shard hop. The
    /// first request of a connection; a later one is refused. Client → broker.
    BindShard = 102,

    /// Store a consumer group's offset for a queue. Client → broker.
    CommitConsumerOffset = 200,
    /// Read a consumer group's stored offset for a queue. Client → broker.
    QueryConsumerOffset = 201,
    /// A queue's minimum and maximum offsets. Client → broker.
    GetQueueOffsets = 202,
    /// The first offset of a queue stored at or after a time. Client → broker.
    SearchOffsetByTimestamp = 203,

    /// Create a topic on a broker. Admin → broker.
    CreateTopic = 300,
    /// Delete a topic from a broker. Admin → broker.
    DeleteTopic = 301,
    /// The topics a broker (or, from a name server, the cluster) has. Admin → broker or
    /// name server.
    ListTopics = 302,

    /// A broker announces itself and its topics. Broker → every name server.
    RegisterBroker = 400,
    /// A broker is still alive. Broker → every name server.
    BrokerHeartbeat = 401,
    /// A broker leaves (clean shutdown). Broker → every name server.
    UnregisterBroker = 402,
    /// Which brokers serve a topic, and its queues. Client → name server.
    GetTopicRoute = 403,
    /// The clusters, broker groups and their members. Admin → name server.
    GetClusterInfo = 404,

    /// A client is alive, with its producer and consumer groups. Client → broker.
    ClientHeartbeat = 500,
    /// The client ids currently in a consumer group. Client → broker.
    GetConsumerGroupMembers = 501,
}

/// Every opcode, in numeric order.
pub const ALL_OPCODES: [Opcode; 17] = [
    Opcode::Produce,
    Opcode::Pull,
    Opcode::BindShard,
    Opcode::CommitConsumerOffset,
    Opcode::QueryConsumerOffset,
    Opcode::GetQueueOffsets,
    Opcode::SearchOffsetByTimestamp,
    Opcode::CreateTopic,
    Opcode::DeleteTopic,
    Opcode::ListTopics,
    Opcode::RegisterBroker,
    Opcode::BrokerHeartbeat,
    Opcode::UnregisterBroker,
    Opcode::GetTopicRoute,
    Opcode::GetClusterInfo,
    Opcode::ClientHeartbeat,
    Opcode::GetConsumerGroupMembers,
];

impl Opcode {
    /// The opcode with this number, or `None` if this build does not know it.
    pub const fn from_u16(number: u16) -> Option<Opcode> {
        Some(match number {
            100 => Opcode::Produce,
            101 => Opcode::Pull,
            102 => Opcode::BindShard,
            200 => Opcode::CommitConsumerOffset,
            201 => Opcode::QueryConsumerOffset,
            202 => Opcode::GetQueueOffsets,
            203 => Opcode::SearchOffsetByTimestamp,
            300 => Opcode::CreateTopic,
            301 => Opcode::DeleteTopic,
            302 => Opcode::ListTopics,
            400 => Opcode::RegisterBroker,
            401 => Opcode::BrokerHeartbeat,
            402 => Opcode::UnregisterBroker,
            403 => Opcode::GetTopicRoute,
            404 => Opcode::GetClusterInfo,
            500 => Opcode::ClientHeartbeat,
            501 => Opcode::GetConsumerGroupMembers,
            _ => return None,
        })
    }

    /// The number on the wire.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers are a promise to every peer: never edit this test to change one, only to
    /// add new opcodes. No wildcard, so a new variant must be listed.
    fn pinned_number(opcode: Opcode) -> u16 {
        match opcode {
            Opcode::Produce => 100,
            Opcode::Pull => 101,
            Opcode::BindShard => 102,
            Opcode::CommitConsumerOffset => 200,
            Opcode::QueryConsumerOffset => 201,
            Opcode::GetQueueOffsets => 202,
            Opcode::SearchOffsetByTimestamp => 203,
            Opcode::CreateTopic => 300,
            Opcode::DeleteTopic => 301,
            Opcode::ListTopics => 302,
            Opcode::RegisterBroker => 400,
            Opcode::BrokerHeartbeat => 401,
            Opcode::UnregisterBroker => 402,
            Opcode::GetTopicRoute => 403,
            Opcode::GetClusterInfo => 404,
            Opcode::ClientHeartbeat => 500,
            Opcode::GetConsumerGroupMembers => 501,
        }
    }

    #[test]
    fn opcode_numbers_are_pinned() {
        for opcode in ALL_OPCODES {
            assert_eq!(opcode.as_u16(), pinned_number(opcode), "{opcode:?}");
        }
    }

    #[test]
    fn from_u16_knows_exactly_the_listed_opcodes() {
        let mut known = 0;
        for number in 0..=u16::MAX {
            if let Some(opcode) = Opcode::from_u16(number) {
                assert_eq!(opcode.as_u16(), number);
                known += 1;
            }
        }
        assert_eq!(known, ALL_OPCODES.len());
        assert_eq!(Opcode::from_u16(0), None);
        assert!(ALL_OPCODES.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
