//! `LoadError`: every way the load generator's library parts can fail — the local cluster,
//! the ledger, the statistics files — with the context a person needs to fix it (which
//! operation, which path, which process and the tail of its log).
//!
//! The storage benchmark keeps its own `PerfError` in the binary (`error.rs`); the two
//! could merge once the benchmark moves into the library too.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Errors of the load generator's library.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
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
    /// The local cluster's options do not make a valid broker config.
    #[error("invalid local cluster options: {reason}")]
    ClusterOptions {
        /// what is wrong (the broker config check's message)
        reason: String,
    },
    /// A server of the local cluster could not be started, or did not announce itself.
    #[error("cannot start the local {what}: {reason}\n{log_tail}")]
    ServerStart {
        /// `"broker"` or `"name server"`
        what: &'static str,
        /// what happened (exit status, silence past the deadline, ...)
        reason: String,
        /// the last lines of its log, headed by the log's path
        log_tail: String,
    },
    /// The broker refused its data directory because the file system does not take
    /// O_DIRECT (tmpfs on older kernels, some network file systems).
    #[error(
        "the data directory {data_dir} refuses O_DIRECT, which the broker's commit log needs: \
         run from a directory on a local disk (ext4, xfs) or pass --data-dir; the broker \
         said: {line}"
    )]
    DirectIoUnsupported {
        /// the cluster's data directory
        data_dir: PathBuf,
        /// the broker's log line saying so
        line: String,
    },
    /// A server of the local cluster did not stop cleanly (exit status other than 0, or no
    /// exit within the deadline).
    #[error("the local {what} did not stop cleanly: {reason}\n{log_tail}")]
    ServerStop {
        /// `"broker"` or `"name server"`
        what: &'static str,
        /// what happened
        reason: String,
        /// the last lines of its log, headed by the log's path
        log_tail: String,
    },
    /// A server exited with this status while it should have been serving.
    #[error("the local {what} exited with {status} while serving\n{log_tail}")]
    ServerExited {
        /// `"broker"` or `"name server"`
        what: &'static str,
        /// its exit status
        status: ExitStatus,
        /// the last lines of its log
        log_tail: String,
    },
    /// The local broker's topic did not show up at the name server in time.
    #[error(
        "topic {topic:?} has no route at the local name server after {waited_ms} ms: {reason}"
    )]
    RouteTimeout {
        /// the topic
        topic: String,
        /// how long we asked
        waited_ms: u64,
        /// the last answer or failure
        reason: String,
    },
    /// A ledger file is not in the ledger format, or is damaged.
    #[error("ledger {path}, byte {position}: {reason}")]
    LedgerFormat {
        /// the ledger file
        path: PathBuf,
        /// byte position of the problem in the file
        position: u64,
        /// what is wrong
        reason: String,
    },
    /// A ledger cannot be used for verification (e.g. it names one message twice).
    #[error("ledger: {reason}")]
    LedgerContents {
        /// what is wrong
        reason: String,
    },
    /// A latency histogram refused an operation.
    #[error("latency histogram: {reason}")]
    Histogram {
        /// what went wrong
        reason: String,
    },
    /// The client library refused or failed (creating a producer, a consumer, a topic).
    #[error("client: {0}")]
    Client(#[source] spillway_client::ClientError),
    /// A load run could not go on.
    #[error("{0}")]
    Failed(String),
    /// A report could not be serialized.
    #[error("serializing {what}: {reason}")]
    Serialize {
        /// what we serialized
        what: &'static str,
        /// the serializer's message
        reason: String,
    },
}

impl LoadError {
    /// A client library error.
    pub fn client(error: spillway_client::ClientError) -> LoadError {
        LoadError::Client(error)
    }

    /// Wraps an I/O error with what we were doing and where.
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LoadError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
