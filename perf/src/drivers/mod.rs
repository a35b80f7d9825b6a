//! The load drivers: producing, consuming and checking through the client library, so
//! their figures are what applications get.
//!
//! * [`produce`]: producer threads with a window of sends in flight ([`window`]).
//! * [`consume`]: consumer threads long-polling their queues.
//! * [`commands`]: the `produce`, `consume`, `e2e`, `verify` and `quickstart` subcommands
//!   built from those, with their command-line arguments.

pub mod commands;
pub mod consume;
pub mod produce;
pub mod window;

use spillway_client::ClientError;

use crate::stats::ErrorKind;

/// How an error is counted in the summary: the broker's code, or what went wrong here.
pub fn error_kind(error: &ClientError) -> ErrorKind {
    if let Some(code) = error.code() {
        return ErrorKind::Wire(code.as_u16());
    }
    ErrorKind::Client(match error {
        ClientError::Broker { .. } | ClientError::UnknownErrorCode { .. } => "broker",
        ClientError::TopicNotFound { .. } => "topic not found",
        ClientError::BrokerUnavailable { .. } => "broker unavailable",
        ClientError::NoNameServer | ClientError::NameServerUnreachable { .. } => "name server",
        ClientError::Io { .. } | ClientError::Disconnected { .. } => "connection",
        ClientError::Timeout { .. } => "timeout",
        ClientError::Wire(_) | ClientError::BadResponse { .. } => "bad response",
        ClientError::Closed => "closed",
        ClientError::InvalidMessage { .. } | ClientError::InvalidConfig { .. } => "invalid",
        #[allow(unreachable_patterns)]
        _ => "other",
    })
}
