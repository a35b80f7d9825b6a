//! The framed binary protocol spoken between clients, brokers and name servers.
//!
//! Not built yet: it arrives with the cluster issue. Message payloads on the wire will be
//! batches in the storage record format (`spillway_storage::record`), encoded once by the
//! producer and stamped, not re-encoded, by the broker.
