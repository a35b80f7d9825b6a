//! `PerfError`: every way a benchmark run can fail, with the context a person needs to fix
//! it (which operation, which path, which case).
//!
//! The benchmark never falls back silently: a directory that cannot do O_DIRECT is an error,
//! not a slower run with different numbers.

use std::path::PathBuf;

use spillway_storage::StorageError;

/// Errors of `spillway-perf`.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// A load run (quickstart, produce, consume, e2e, verify) failed.
    #[error(transparent)]
    Load(#[from] spillway_perf::LoadError),
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
    /// The benchmark directory is on tmpfs, which has no disk behind it and refuses O_DIRECT.
    #[error(
        "{path} is on tmpfs: a storage benchmark needs a disk file system (ext4, xfs); \
         pass --dir on a real disk"
    )]
    Tmpfs {
        /// the directory
        path: PathBuf,
    },
    /// Opening a file with O_DIRECT failed: the file system does not support direct I/O.
    #[error(
        "cannot open {path} with O_DIRECT ({source}); the file system under --dir does not \
         support direct I/O, and the benchmark will not fall back to buffered I/O"
    )]
    DirectIoUnsupported {
        /// the file
        path: PathBuf,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// An io_uring read or write completed with an error, or moved nothing.
    #[error("io_uring {operation} of {length} bytes at offset {offset} in {path}: {source}")]
    RingTransfer {
        /// `"read"` or `"write"`
        operation: &'static str,
        /// file
        path: PathBuf,
        /// file offset of the read or write
        offset: u64,
        /// bytes asked for
        length: usize,
        /// the OS error
        #[source]
        source: std::io::Error,
    },
    /// An aligned buffer could not be allocated.
    #[error("allocating a {bytes}-byte buffer aligned to {alignment} bytes failed")]
    Allocation {
        /// size asked for
        bytes: usize,
        /// alignment asked for
        alignment: usize,
    },
    /// The storage engine failed during a benchmark case.
    #[error("storage engine, case {case}, while {operation}: {source}")]
    Storage {
        /// the case (record size and flush mode)
        case: String,
        /// what the benchmark was doing
        operation: &'static str,
        /// the engine's error
        #[source]
        source: StorageError,
    },
    /// A benchmark record could not be encoded.
    #[error("encoding a benchmark record with a {body_bytes}-byte body: {reason}")]
    Record {
        /// the body size asked for
        body_bytes: u32,
        /// what went wrong
        reason: String,
    },
    /// The glommio executor could not start, or its thread panicked.
    #[error("glommio executor for case {case}: {reason}")]
    Executor {
        /// the case
        case: String,
        /// what went wrong
        reason: String,
    },
    /// A latency histogram refused a value.
    #[error("latency histogram: {reason}")]
    Histogram {
        /// what went wrong
        reason: String,
    },
    /// The command line asked for something the benchmark cannot do.
    #[error("invalid arguments: {reason}")]
    Usage {
        /// what is wrong
        reason: String,
    },
}

impl PerfError {
    /// Wraps an I/O error with what we were doing and where.
    pub fn io(operation: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PerfError::Io {
            operation,
            path: path.into(),
            source,
        }
    }
}
