//! [`Refusal`]: why the broker did not do what a request asked, as the client hears it — a
//! stable [`ErrorCode`] and a readable message.
//!
//! Every failure on the request path becomes a `Refusal` at the point where its cause is
//! known (a storage error, a missing topic, a limit), and the connection turns it into an
//! error response (or, inside a produce response, into a part's error code). Nothing on the
//! request path panics on what a peer sent; a refusal is an answer, not a crash.

use std::fmt;

use spillway_storage::StorageError;
use spillway_wire::{ErrorCode, WireError};

/// A request the broker refuses: the code clients match on and the message people read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// Why, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// The topic does not exist on this broker.
    pub fn topic_not_found(topic: &str) -> Refusal {
        Refusal::new(
            ErrorCode::TopicNotFound,
            format!("topic {topic:?} does not exist on this broker"),
        )
    }

    /// The topic exists but has no such queue.
    pub fn queue_not_found(topic: &str, queue: u32, queue_count: u32) -> Refusal {
        Refusal::new(
            ErrorCode::QueueNotFound,
            format!(
                "topic {topic:?} has queues 0 to {}, not {queue}",
                queue_count.saturating_sub(1)
            ),
        )
    }

    /// The broker is shutting down or a shard stopped answering.
    pub fn unavailable(what: &str) -> Refusal {
        Refusal::new(ErrorCode::ServiceUnavailable, what)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.code, self.message)
    }
}

impl From<StorageError> for Refusal {
    fn from(error: StorageError) -> Refusal {
        use spillway_storage::record::RecordError;
        let code = match &error {
            StorageError::BadRecord {
                source: RecordError::TooLarge { .. },
                ..
            } => ErrorCode::MessageTooLarge,
            StorageError::BadRecord { .. } | StorageError::TopicMismatch { .. } => {
                ErrorCode::BadRecord
            }
            StorageError::BadTopic { .. } => ErrorCode::InvalidArgument,
            StorageError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            StorageError::QueueNotFound { .. } => ErrorCode::QueueNotFound,
            StorageError::DiskFull { .. } => ErrorCode::DiskFull,
            StorageError::Corrupt { .. } | StorageError::DamagedLog { .. } => {
                ErrorCode::StorageDamaged
            }
            StorageError::TooManyQueues { .. } | StorageError::Closed { .. } => {
                ErrorCode::ServiceUnavailable
            }
            StorageError::Io { .. }
            | StorageError::DirectIoUnsupported { .. }
            | StorageError::Config { .. } => ErrorCode::Internal,
        };
        if code == ErrorCode::Internal || code == ErrorCode::StorageDamaged {
            tracing::error!(%error, "storage failure answered to a client");
        }
        Refusal::new(code, error.to_string())
    }
}

impl From<WireError> for Refusal {
    fn from(error: WireError) -> Refusal {
        Refusal::new(error.error_code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_errors_map_to_the_codes_clients_match_on() {
        let too_large = StorageError::BadRecord {
            index: 3,
            source: spillway_storage::record::RecordError::TooLarge { size: 9, limit: 8 },
        };
        assert_eq!(Refusal::from(too_large).code, ErrorCode::MessageTooLarge);
        let crc = StorageError::BadRecord {
            index: 0,
            source: spillway_storage::record::RecordError::BodyCrc,
        };
        let refusal = Refusal::from(crc);
        assert_eq!(refusal.code, ErrorCode::BadRecord);
        assert!(refusal.message.contains("record 0"), "{refusal}");
        let full = StorageError::DiskFull {
            usage_percent: 96.0,
            hard_mark_percent: 95.0,
        };
        assert_eq!(Refusal::from(full).code, ErrorCode::DiskFull);
    }
}
