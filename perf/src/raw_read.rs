//! How fast this disk gives back a file in plain sequential O_DIRECT reads, with no engine in
//! the way: the baseline a backlog consume is compared with.
//!
//! It reads an existing file from start to end through
//! [`SequentialRing`](crate::raw_write::SequentialRing): 1 MiB aligned blocks,
//! [`QUEUE_DEPTH`](crate::raw_write::QUEUE_DEPTH) reads in flight, on the calling thread.
//! O_DIRECT bypasses the page cache, so what was cached does not count. The clock covers
//! the reads, not the open or the buffer allocation. It never writes or removes the file,
//! and must never run on a glommio executor thread (it would block it).

use std::fs::OpenOptions;
use std::path::Path;
use std::time::Instant;

use crate::error::PerfError;
use crate::raw_write::{open_direct, Direction, SequentialRing, TransferResult, ALIGNMENT_BYTES};

/// Reads all of the file at `path`, whose size must be a non-zero multiple of
/// [`ALIGNMENT_BYTES`] (as [`raw_write::write_file`](crate::raw_write::write_file) leaves
/// it), and returns the time it took.
pub fn measure(path: &Path) -> Result<TransferResult, PerfError> {
    let file = open_direct(path, OpenOptions::new().read(true))?;
    let bytes = file
        .metadata()
        .map_err(|source| PerfError::io("reading metadata of", path, source))?
        .len();
    if bytes == 0 || bytes % ALIGNMENT_BYTES as u64 != 0 {
        return Err(PerfError::io(
            "reading with O_DIRECT",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the file is {bytes} bytes, not a non-zero multiple of {ALIGNMENT_BYTES}"),
            ),
        ));
    }
    let mut ring = SequentialRing::new(&file, path, Direction::Read)?;

    let start = Instant::now();
    ring.run(bytes)?;
    let elapsed = start.elapsed();
    Ok(TransferResult { bytes, elapsed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw_write::{self, BLOCK_BYTES};
    use crate::run_directory::disk_test_dir;

    #[test]
    fn reads_a_whole_file_with_a_partial_last_block() {
        let dir = disk_test_dir("raw-read");
        let path = dir.path().join("read.dat");
        let written = raw_write::write_file(&path, 9 * BLOCK_BYTES as u64 + 8192).unwrap();
        let read = measure(&path).unwrap();
        assert_eq!(read.bytes, written.bytes);
        assert!(read.mb_s() > 0.0);
        assert!(path.exists(), "reading must not remove the file");
    }

    #[test]
    fn an_unaligned_or_empty_file_is_refused() {
        let dir = disk_test_dir("raw-read");
        for (name, bytes) in [("empty.dat", 0), ("unaligned.dat", 1000)] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![1u8; bytes]).unwrap();
            let error = measure(&path).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("not a non-zero multiple of 4096"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let dir = disk_test_dir("raw-read");
        assert!(matches!(
            measure(&dir.path().join("missing.dat")),
            Err(PerfError::Io { .. })
        ));
    }
}
