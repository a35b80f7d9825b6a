//! The floor under any `flush = "sync"` acknowledgement: how long this disk takes to make
//! one small write durable, with no engine in the way.
//!
//! One 4 KiB O_DIRECT write at a time (queue depth 1), each at the next offset of a
//! preallocated file and followed by an fdatasync, both through its own `io_uring` on the
//! calling thread: the write is linked to the fdatasync (`IO_LINK`), so the fdatasync starts
//! only once the write is done and one `io_uring_enter` submits both. Preallocated like the
//! commit log's segments (fallocate without `KEEP_SIZE`), so each fdatasync also commits
//! the extent conversion the file system must do, as it does under the engine. Each sample
//! is the time from submission to the fdatasync's completion, in nanoseconds. It never runs
//! on a glommio executor thread, and removes its file at the end.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, squeue, types, IoUring};

use crate::engine_append::histogram_error;
use crate::error::PerfError;
use crate::raw_write::{open_direct, preallocate, AlignedBuffer, ALIGNMENT_BYTES};

/// Size of each write.
pub const WRITE_BYTES: usize = 4096;

const _: () = assert!(WRITE_BYTES % ALIGNMENT_BYTES == 0);
const _: () = assert!(WRITE_BYTES <= i32::MAX as usize);

/// `user_data` of the write in the ring.
const WRITE_USER_DATA: u64 = 0;
/// `user_data` of the fdatasync linked to it.
const SYNC_USER_DATA: u64 = 1;

/// What the measurement saw.
#[derive(Clone, Debug)]
pub struct SyncWriteResult {
    /// Time from submitting each write to the completion of its fdatasync, in nanoseconds
    /// (3 significant digits).
    pub latency_ns: Histogram<u64>,
    /// Time from the first submission to the last completion.
    pub elapsed: Duration,
}

impl SyncWriteResult {
    /// Writes made durable (the samples in the histogram).
    pub fn writes(&self) -> u64 {
        self.latency_ns.len()
    }
}

/// Makes up to `max_writes` 4 KiB writes durable one after another in a new file in `dir`,
/// starting no new one once `time_limit` has passed (the first always runs), and returns
/// their latencies. Removes the file afterwards.
pub fn measure(
    dir: &Path,
    max_writes: u64,
    time_limit: Duration,
) -> Result<SyncWriteResult, PerfError> {
    if max_writes == 0 {
        return Err(PerfError::Usage {
            reason: "the number of sync writes must be above 0".into(),
        });
    }
    let file_bytes =
        max_writes
            .checked_mul(WRITE_BYTES as u64)
            .ok_or_else(|| PerfError::Usage {
                reason: format!("{max_writes} sync writes of {WRITE_BYTES} bytes overflow"),
            })?;
    let path = dir.join("sync-write.dat");
    let file = open_direct(&path, OpenOptions::new().write(true).create_new(true))?;
    preallocate(&file, &path, file_bytes)?;
    let mut writer = SyncWriter::new(&file, &path, WRITE_BYTES)?;
    let mut latency_ns = Histogram::<u64>::new(3).map_err(histogram_error)?;

    let start = Instant::now();
    for index in 0..max_writes {
        if index > 0 && start.elapsed() >= time_limit {
            break;
        }
        let submitted = Instant::now();
        writer.write_and_sync(index * WRITE_BYTES as u64, WRITE_BYTES)?;
        let nanos = u64::try_from(submitted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latency_ns.record(nanos.max(1)).map_err(histogram_error)?;
    }
    let elapsed = start.elapsed();

    drop(writer);
    drop(file);
    std::fs::remove_file(&path).map_err(|source| PerfError::io("removing", &path, source))?;
    Ok(SyncWriteResult {
        latency_ns,
        elapsed,
    })
}

/// A ring with room for one write and its fdatasync, and the buffer they write from.
pub(crate) struct SyncWriter<'a> {
    ring: IoUring,
    file: &'a File,
    path: &'a Path,
    /// `None` only once leaked because the ring broke with the write in flight.
    buffer: Option<AlignedBuffer>,
}

impl<'a> SyncWriter<'a> {
    /// A writer of up to `buffer_bytes` (a multiple of [`ALIGNMENT_BYTES`]) at a time into
    /// `file`, opened with O_DIRECT.
    pub(crate) fn new(
        file: &'a File,
        path: &'a Path,
        buffer_bytes: usize,
    ) -> Result<SyncWriter<'a>, PerfError> {
        assert!(
            buffer_bytes % ALIGNMENT_BYTES == 0 && u32::try_from(buffer_bytes).is_ok(),
            "a sync writer's buffer is a multiple of {ALIGNMENT_BYTES} bytes below 4 GiB"
        );
        Ok(SyncWriter {
            ring: IoUring::new(2)
                .map_err(|source| PerfError::io("creating an io_uring for", path, source))?,
            file,
            path,
            buffer: Some(AlignedBuffer::new(buffer_bytes, ALIGNMENT_BYTES)?),
        })
    }

    /// Writes the buffer's first `length` bytes (a multiple of [`ALIGNMENT_BYTES`], at most
    /// the buffer) at `offset` and fdatasyncs the file; returns once both completed.
    pub(crate) fn write_and_sync(&mut self, offset: u64, length: usize) -> Result<(), PerfError> {
        let Some(buffer) = &self.buffer else {
            unreachable!("a sync writer is not used after its ring broke");
        };
        assert!(
            length % ALIGNMENT_BYTES == 0 && length <= buffer.len(),
            "write length {length} is not aligned or exceeds the buffer"
        );
        let fd = types::Fd(self.file.as_raw_fd());
        let entries = [
            // Below 4 GiB: checked in `new`.
            opcode::Write::new(fd, buffer.as_ptr(), length as u32)
                .offset(offset)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(WRITE_USER_DATA),
            opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(SYNC_USER_DATA),
        ];
        // SAFETY: the buffer outlives the write: this function does not return before both
        // entries completed, unless the ring broke, and then it leaks the buffer.
        let pushed = unsafe { self.ring.submission().push_multiple(&entries) };
        if pushed.is_err() {
            return Err(PerfError::io(
                "queueing a sync write for",
                self.path,
                std::io::Error::other("io_uring submission queue is full"),
            ));
        }
        let mut write_result = None;
        let mut sync_result = None;
        loop {
            let outstanding =
                usize::from(write_result.is_none()) + usize::from(sync_result.is_none());
            if outstanding == 0 {
                break;
            }
            if let Err(source) = self.ring.submit_and_wait(outstanding) {
                if source.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // The write may still be reading the buffer: leak it rather than free it.
                std::mem::forget(self.buffer.take());
                return Err(PerfError::io("io_uring_enter for", self.path, source));
            }
            for entry in self.ring.completion() {
                match entry.user_data() {
                    WRITE_USER_DATA => write_result = Some(entry.result()),
                    SYNC_USER_DATA => sync_result = Some(entry.result()),
                    other => unreachable!("completion with unknown user_data {other}"),
                }
            }
        }
        let (Some(written), Some(synced)) = (write_result, sync_result) else {
            unreachable!("the loop ends once both entries completed");
        };
        // A failed or short write cancels the linked fdatasync: report the write.
        if written != length as i32 {
            let source = if written < 0 {
                std::io::Error::from_raw_os_error(-written)
            } else {
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short O_DIRECT write: {written} of {length} bytes"),
                )
            };
            return Err(PerfError::RingTransfer {
                operation: "write",
                path: self.path.to_path_buf(),
                offset,
                length,
                source,
            });
        }
        if synced < 0 {
            return Err(PerfError::io(
                "io_uring fdatasync of",
                self.path,
                std::io::Error::from_raw_os_error(-synced),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_directory::disk_test_dir;

    #[test]
    fn makes_every_write_durable_and_removes_its_file() {
        let dir = disk_test_dir("sync-write");
        let result = measure(dir.path(), 20, Duration::from_secs(60)).unwrap();
        assert_eq!(result.writes(), 20);
        assert!(result.latency_ns.min() > 0);
        // Nanoseconds, not microseconds: the slowest sample fits in the whole run.
        let slowest_ns = result.latency_ns.max() as f64;
        assert!(
            slowest_ns <= result.elapsed.as_nanos() as f64 * 1.001,
            "{slowest_ns}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_time_limit_stops_after_the_first_write() {
        let dir = disk_test_dir("sync-write");
        let result = measure(dir.path(), 1000, Duration::ZERO).unwrap();
        assert_eq!(result.writes(), 1);
    }

    #[test]
    fn zero_writes_are_refused_before_any_io() {
        let missing = Path::new("/nonexistent/spillway-perf");
        assert!(matches!(
            measure(missing, 0, Duration::from_secs(1)),
            Err(PerfError::Usage { .. })
        ));
    }
}
