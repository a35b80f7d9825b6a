//! Newtypes for the numbers the protocol carries, so that a queue offset can never be passed
//! where a queue id or a request id is expected.
//!
//! They mirror `spillway_storage`'s ids (`QueueId`, `QueueOffset`, `ShardId`) but are
//! separate types: `wire` must not depend on `storage`, which pulls in glommio, and these
//! also have to be rkyv-archivable. Converting is a `.0` away. Each has an archived form
//! (`ArchivedQueueId`, …) read in place from a header; `to_native()` turns it back.

use rkyv::{Archive, Deserialize, Serialize};
use std::fmt;

macro_rules! wire_id {
    ($(#[$doc:meta])* $name:ident, $archived:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(
            Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord,
            Hash, Default,
        )]
        #[rkyv(derive(Debug, Clone, Copy, PartialEq, Eq, Hash), compare(PartialEq))]
        pub struct $name(pub $inner);

        impl $archived {
            /// The native value of this archived id.
            pub fn to_native(&self) -> $name {
                $name(self.0.to_native())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

wire_id!(
    /// Identifies one request on a connection; its response carries the same id, so many
    /// requests can be in flight at once. Chosen by the sender, unique among its requests in
    /// flight on that connection. Id 0 ([`RequestId::NONE`]) is reserved: one-way frames and
    /// connection-level error responses carry it, so senders start at 1.
    RequestId,
    ArchivedRequestId,
    u64
);

wire_id!(
    /// A queue of a topic: 0, 1, …, queue count − 1.
    QueueId,
    ArchivedQueueId,
    u32
);

wire_id!(
    /// Index of a message inside its queue: dense, 0, 1, 2, …
    QueueOffset,
    ArchivedQueueOffset,
    u64
);

wire_id!(
    /// A shard (one per configured core) of a broker.
    ShardId,
    ArchivedShardId,
    u16
);

wire_id!(
    /// A broker inside its broker group: 0 is the master ([`BrokerId::MASTER`]), the
    /// replicas are > 0.
    BrokerId,
    ArchivedBrokerId,
    u32
);

impl RequestId {
    /// The id of frames that answer no request and expect no answer.
    pub const NONE: RequestId = RequestId(0);
}

impl BrokerId {
    /// The master of a broker group.
    pub const MASTER: BrokerId = BrokerId(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archived_ids_read_back_their_native_values() {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&(
            QueueId(7),
            QueueOffset(u64::MAX),
            ShardId(3),
            BrokerId(2),
            RequestId(99),
        ))
        .unwrap();
        let archived = rkyv::access::<
            rkyv::Archived<(QueueId, QueueOffset, ShardId, BrokerId, RequestId)>,
            rkyv::rancor::Error,
        >(&bytes)
        .unwrap();
        assert_eq!(archived.0.to_native(), QueueId(7));
        assert_eq!(archived.1.to_native(), QueueOffset(u64::MAX));
        assert_eq!(archived.2.to_native(), ShardId(3));
        assert_eq!(archived.3.to_native(), BrokerId(2));
        assert_eq!(archived.4.to_native(), RequestId(99));
        assert_eq!(QueueId(7).to_string(), "7");
    }
}
