//! `StorageError`: every way a storage operation can fail, with the context to act on it.

use std::path::PathBuf;

use crate::ids::{LogPosition, QueueId};
use crate::record::RecordError;

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("{operation} {path}: {source}")]
    Io {
        /// what we were doing
        operation: &'static str,
        /// the file or directory
        path: PathBuf,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// The file system refused O_DIRECT (tmpfs does): Spillway will not silently fall back.
    #[error(
        "O_DIRECT is not supported for {path} (tmpfs and some network file systems refuse it); \
         put the data directory on a local disk file system such as ext4 or xfs"
    )]
    DirectIoUnsupported {
        /// the file
        path: PathBuf,
    },
    /// A record of a batch is malformed.
    #[error("record {index} of the batch is invalid: {source}")]
    BadRecord {
        /// index of the record in its batch
        index: usize,
        /// what is wrong
        #[source]
        source: RecordError,
    },
    /// A record names another topic than the batch.
    #[error("record {index} of the batch belongs to another topic than {topic}")]
    TopicMismatch {
        /// index of the record in its batch
        index: usize,
        /// the batch's topic
        topic: String,
    },
    /// Empty or invalid topic name.
    #[error("invalid topic name {topic:?}: {reason}")]
    BadTopic {
        /// the name
        topic: String,
        /// why
        reason: &'static str,
    },
    /// Batch larger than the limit.
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    BatchTooLarge {
        /// batch size
        size: usize,
        /// limit
        limit: usize,
    },
    /// Too many queues on this shard.
    #[error("this shard already holds its limit of {limit} queues")]
    TooManyQueues {
        /// limit
        limit: usize,
    },
    /// The queue does not exist on this shard.
    #[error("queue {queue} of topic {topic} not found")]
    QueueNotFound {
        /// topic
        topic: String,
        /// queue
        queue: QueueId,
    },
    /// The disk passed the hard usage mark: appends are refused until retention frees space.
    #[error(
        "disk full: usage {usage_percent:.1}% is above the hard mark of {hard_mark_percent:.1}%"
    )]
    DiskFull {
        /// current usage
        usage_percent: f64,
        /// configured hard mark
        hard_mark_percent: f64,
    },
    /// A record read from disk failed its CRC or structure check.
    #[error("corrupt record at log position {position} in {path}: {source}")]
    Corrupt {
        /// where
        position: LogPosition,
        /// segment file
        path: PathBuf,
        /// what
        #[source]
        source: RecordError,
    },
    /// Recovery found damage before the tail of the log and repair was not requested.
    #[error(
        "commit log damaged at position {position} in {path}, with valid records after it \
         (first at {next_valid}); refusing to start. Inspect the file, then start with repair \
         enabled to truncate the log at {position} (data after it is lost)"
    )]
    DamagedLog {
        /// first bad position
        position: LogPosition,
        /// segment file
        path: PathBuf,
        /// first valid record found after the damage
        next_valid: LogPosition,
    },
    /// The store is shutting down or its writer failed; nothing more is accepted.
    #[error("the store is closed: {reason}")]
    Closed {
        /// why
        reason: String,
    },
    /// Invalid configuration.
    #[error("invalid storage config: {key}: {reason}")]
    Config {
        /// config key
        key: &'static str,
        /// reason
        reason: String,
    },
}

impl StorageError {
    /// Wraps an I/O error with what we were doing and where.
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}

/// Converts a glommio error into an `io::Error`, keeping the OS error code.
pub(crate) fn from_glommio(error: glommio::GlommioError<()>) -> std::io::Error {
    error.into()
}

/// Result type of the storage crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
