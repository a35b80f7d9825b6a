//! The Spillway client library: producer, consumer and admin.
//!
//! Not built yet: it arrives with the client issue. It will build record batches with
//! `spillway_storage::record::RecordBuilder`, so a batch is encoded once, on the producer.
