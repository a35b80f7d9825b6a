//! Request handlers, one file per subject. Each takes the shard the request arrived on and
//! the frame, reads the header in place, moves the work to the owning shard where needed
//! ([`crate::shard::Shard::run_on`]), and returns the response header (and payload) or a
//! [`crate::refusal::Refusal`]. Handlers never touch the socket.

pub mod bind_shard;
pub mod clients;
pub mod offsets;
pub mod produce;
pub mod pull;
pub mod topics;
