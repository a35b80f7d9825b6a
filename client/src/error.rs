//! [`ClientError`]: every way a client operation can fail, and whether trying again may
//! help ([`ClientError::is_retriable`]).
//!
//! One enum for the whole crate, because one failure often reaches many callers: a broken
//! connection fails every request in flight on it, and a refused produce part fails every
//! message of the batch. So the error is `Clone` (the I/O cause sits behind an `Arc`) and
//! carries its context (the address, the topic) rather than relying on the caller to know
//! it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use spillway_wire::{ErrorCode, WireError};

/// Result of a client operation.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Why a client operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A broker or name server refused the request (or one part of a produce request) with
    /// this code. The message is the peer's explanation, for logs; act on the code.
    #[error("refused with {code}: {message}")]
    Broker {
        /// Why, as the peer said it.
        code: ErrorCode,
        /// The peer's detail, prefixed with what was asked of whom.
        message: String,
    },
    /// A peer answered with an error code this build does not know (a newer peer): a failure
    /// all the same.
    #[error("refused with unknown error code {code}: {message}")]
    UnknownErrorCode {
        /// The number it sent.
        code: u16,
        /// The peer's detail.
        message: String,
    },
    /// No name server knows a route for the topic: no broker holds it.
    #[error("topic {topic} not found: no broker holds it")]
    TopicNotFound {
        /// The topic.
        topic: String,
    },
    /// The route names no live broker that can serve the request (a broker group with no
    /// master for a write, or a broker group the route does not list).
    #[error("no broker available for {topic} on {broker_name}: {reason}")]
    BrokerUnavailable {
        /// The topic.
        topic: String,
        /// The broker group asked for (empty when the topic has no writable group at all).
        broker_name: String,
        /// What is missing.
        reason: &'static str,
    },
    /// The configuration lists no name server, so no route can be looked up.
    #[error("no name server configured")]
    NoNameServer,
    /// Every name server failed to answer; the last failure is quoted.
    #[error("no name server answered; last failure: {last_error}")]
    NameServerUnreachable {
        /// The last name server's failure.
        last_error: String,
    },
    /// The operating system refused a socket operation (connect, write, read).
    #[error("I/O error with {address}: {source}")]
    Io {
        /// The peer.
        address: String,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection closed (the peer closed it, sent an unreadable stream, or a request
    /// on it timed out) before the answer came.
    #[error("connection to {address} lost: {reason}")]
    Disconnected {
        /// The peer.
        address: String,
        /// Why the connection ended.
        reason: String,
    },
    /// No answer within the request timeout.
    #[error("no answer from {address} within {timeout:?}")]
    Timeout {
        /// The peer.
        address: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// A frame could not be encoded (e.g. over the frame limit) or a response header could
    /// not be decoded.
    #[error("wire error: {0}")]
    Wire(#[from] WireError),
    /// A response that decodes but does not make sense (a stored record failing its CRC,
    /// a record count that disagrees with the records, the wrong number of produce results).
    #[error("bad response from {address}: {reason}")]
    BadResponse {
        /// The peer.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The producer (or client) was closed: nothing more is sent.
    #[error("closed")]
    Closed,
    /// The message cannot be sent as it is (too large, topic name too long, …).
    #[error("invalid message: {reason}")]
    InvalidMessage {
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is outside its allowed range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which value and why.
        reason: String,
    },
}

impl ClientError {
    /// Whether the same request may succeed if tried again, possibly elsewhere after a route
    /// refresh: lost connections, timeouts, unreachable name servers, a broker that is
    /// starting, stopping, overloaded or not the master, a flush or replication timeout
    /// (the retry may store a duplicate), and a topic or queue a broker does not have (the
    /// route may have moved). Not retriable: [`ErrorCode::DiskFull`], invalid requests or
    /// messages, a topic no name server knows, and a closed producer.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => matches!(
                code,
                ErrorCode::ServiceUnavailable
                    | ErrorCode::NotMaster
                    | ErrorCode::TooManyRequests
                    | ErrorCode::FlushTimeout
                    | ErrorCode::ReplicationTimeout
                    | ErrorCode::TopicNotFound
                    | ErrorCode::QueueNotFound
            ),
            ClientError::Io { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout { .. }
            | ClientError::NameServerUnreachable { .. }
            | ClientError::BrokerUnavailable { .. } => true,
            ClientError::UnknownErrorCode { .. }
            | ClientError::TopicNotFound { .. }
            | ClientError::NoNameServer
            | ClientError::Wire(_)
            | ClientError::BadResponse { .. }
            | ClientError::Closed
            | ClientError::InvalidMessage { .. }
            | ClientError::InvalidConfig { .. } => false,
        }
    }

    /// Whether the failure says the cached route may be wrong (the broker moved, lost its
    /// master role, or no longer holds the topic), so it should be fetched again.
    pub fn suggests_route_change(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => matches!(
                code,
                ErrorCode::NotMaster | ErrorCode::TopicNotFound | ErrorCode::QueueNotFound
            ),
            ClientError::Io { .. }
            | ClientError::Disconnected { .. }
            | ClientError::BrokerUnavailable { .. } => true,
            _ => false,
        }
    }

    /// The broker's error code, if a broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub(crate) fn io(address: &str, source: io::Error) -> ClientError {
        ClientError::Io {
            address: address.to_owned(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn bad_response(address: &str, reason: impl Into<String>) -> ClientError {
        ClientError::BadResponse {
            address: address.to_owned(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ErrorCode) -> ClientError {
        ClientError::Broker {
            code,
            message: String::new(),
        }
    }

    #[test]
    fn disk_full_is_final_and_not_master_is_retriable() {
        assert!(!refused(ErrorCode::DiskFull).is_retriable());
        assert!(!refused(ErrorCode::MessageTooLarge).is_retriable());
        assert!(!refused(ErrorCode::BadRecord).is_retriable());
        assert!(refused(ErrorCode::NotMaster).is_retriable());
        assert!(refused(ErrorCode::ServiceUnavailable).is_retriable());
        assert!(refused(ErrorCode::TopicNotFound).is_retriable());
        assert!(refused(ErrorCode::NotMaster).suggests_route_change());
        assert!(!refused(ErrorCode::ServiceUnavailable).suggests_route_change());
    }

    #[test]
    fn connection_failures_are_retriable_and_closed_is_not() {
        let io = ClientError::io(
            "127.0.0.1:1",
            io::Error::from(io::ErrorKind::ConnectionRefused),
        );
        assert!(io.is_retriable());
        assert!(io.clone().to_string().contains("127.0.0.1:1"));
        assert!(ClientError::Timeout {
            address: "a".into(),
            timeout: Duration::from_secs(1)
        }
        .is_retriable());
        assert!(!ClientError::Closed.is_retriable());
        assert!(!ClientError::TopicNotFound { topic: "t".into() }.is_retriable());
    }
}
