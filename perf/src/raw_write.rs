//! The baseline: how fast this disk takes a plain sequential O_DIRECT write, with no engine
//! in the way. Every engine case is reported as a ratio to this number.
//!
//! It drives its own `io_uring` (the `io-uring` crate, not glommio) on the calling thread:
//! one preallocated file, 1 MiB aligned blocks, [`QUEUE_DEPTH`] writes kept in flight, then
//! one fdatasync. The clock covers the writes and the fdatasync, not the open or fallocate.
//! It must never run on a glommio executor thread (it would block it).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

use crate::error::PerfError;

/// Size of each write.
pub const WRITE_BYTES: usize = 1 << 20;
/// Writes kept in flight (and the ring's size).
pub const QUEUE_DEPTH: usize = 8;
/// O_DIRECT alignment of buffers, offsets and lengths.
pub const ALIGNMENT_BYTES: usize = 4096;

const _: () = assert!(WRITE_BYTES % ALIGNMENT_BYTES == 0);
const _: () = assert!(WRITE_BYTES <= u32::MAX as usize);

/// What the baseline measured.
#[derive(Clone, Copy, Debug)]
pub struct RawWriteResult {
    /// Bytes written (the request rounded up to [`ALIGNMENT_BYTES`]).
    pub bytes: u64,
    /// Time from the first write's submission to the end of the fdatasync.
    pub elapsed: Duration,
}

impl RawWriteResult {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Writes `requested_bytes` (rounded up to a multiple of 4096) to a new file in `dir` and
/// returns the time it took. Removes the file afterwards.
pub fn measure(dir: &Path, requested_bytes: u64) -> Result<RawWriteResult, PerfError> {
    let bytes = requested_bytes.div_ceil(ALIGNMENT_BYTES as u64) * ALIGNMENT_BYTES as u64;
    if bytes == 0 {
        return Err(PerfError::Usage {
            reason: "--bytes must be above 0".into(),
        });
    }
    let path = dir.join("raw-write.dat");
    let file = open_direct(&path)?;
    preallocate(&file, &path, bytes)?;
    let buffers = (0..QUEUE_DEPTH)
        .map(|_| AlignedBuffer::new(WRITE_BYTES, ALIGNMENT_BYTES))
        .collect::<Result<Vec<_>, _>>()?;
    let ring = IoUring::new(QUEUE_DEPTH as u32)
        .map_err(|source| PerfError::io("creating an io_uring for", &path, source))?;
    let mut writer = RingWriter {
        ring,
        file: &file,
        path: &path,
        buffers,
        in_flight: [None; QUEUE_DEPTH],
    };

    let start = Instant::now();
    writer.write_sequentially(bytes)?;
    file.sync_data()
        .map_err(|source| PerfError::io("fdatasync", &path, source))?;
    let elapsed = start.elapsed();

    drop(file);
    std::fs::remove_file(&path).map_err(|source| PerfError::io("removing", &path, source))?;
    Ok(RawWriteResult { bytes, elapsed })
}

/// Opens `path` for writing with O_DIRECT, creating it; a refusal is reported as such.
fn open_direct(path: &Path) -> Result<File, PerfError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => PerfError::DirectIoUnsupported {
                path: path.to_path_buf(),
                source,
            },
            _ => PerfError::io("opening with O_DIRECT", path, source),
        })
}

/// Reserves `bytes` of disk for the file, so the writes do not allocate blocks.
fn preallocate(file: &File, path: &Path, bytes: u64) -> Result<(), PerfError> {
    let length = libc::off_t::try_from(bytes).map_err(|_| PerfError::Usage {
        reason: format!("--bytes {bytes} is too large for this platform"),
    })?;
    // SAFETY: fallocate on an open descriptor with plain integer arguments.
    let status = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if status != 0 {
        return Err(PerfError::io(
            "fallocate",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// One write in flight: where it goes and how much of it is still to be written.
#[derive(Clone, Copy, Debug)]
struct PendingWrite {
    offset: u64,
    length: usize,
    /// Bytes of the slot's buffer already written by earlier (short) completions.
    done: usize,
}

/// Keeps up to [`QUEUE_DEPTH`] sequential writes in flight, one per buffer slot.
struct RingWriter<'a> {
    ring: IoUring,
    file: &'a File,
    path: &'a Path,
    /// One buffer per slot; the kernel reads `buffers[slot]` while `in_flight[slot]` is set.
    buffers: Vec<AlignedBuffer>,
    in_flight: [Option<PendingWrite>; QUEUE_DEPTH],
}

impl RingWriter<'_> {
    fn write_sequentially(&mut self, total_bytes: u64) -> Result<(), PerfError> {
        let mut next_offset = 0u64;
        let mut first_error: Option<PerfError> = None;
        for slot in 0..QUEUE_DEPTH {
            if next_offset >= total_bytes {
                break;
            }
            let length = (total_bytes - next_offset).min(WRITE_BYTES as u64) as usize;
            if let Err(error) = self.start(slot, next_offset, length, 0) {
                first_error = Some(error);
                break;
            }
            next_offset += length as u64;
        }
        // Once an error is seen no new write starts, but the loop still waits for every write
        // in flight: the kernel reads from our buffers until each one completes.
        while self.in_flight.iter().any(Option::is_some) {
            if let Err(source) = self.ring.submit_and_wait(1) {
                if source.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing more can be reaped through a broken ring, yet writes may still be
                // reading our buffers: leak them rather than free memory the kernel uses.
                std::mem::forget(std::mem::take(&mut self.buffers));
                return Err(PerfError::io("io_uring_enter for", self.path, source));
            }
            let completions: Vec<(u64, i32)> = self
                .ring
                .completion()
                .map(|entry| (entry.user_data(), entry.result()))
                .collect();
            for (user_data, result) in completions {
                let slot = user_data as usize;
                let write = self.in_flight.get_mut(slot).and_then(Option::take);
                let Some(write) = write else {
                    unreachable!("completion for slot {slot}, which has no write in flight");
                };
                let remaining = write.length - write.done;
                let failure = if result < 0 {
                    Some(std::io::Error::from_raw_os_error(-result))
                } else if result == 0 {
                    Some(std::io::Error::from(std::io::ErrorKind::WriteZero))
                } else {
                    None
                };
                if let Some(source) = failure {
                    first_error.get_or_insert(PerfError::RingWrite {
                        path: self.path.to_path_buf(),
                        offset: write.offset + write.done as u64,
                        length: remaining,
                        source,
                    });
                    continue;
                }
                if first_error.is_some() {
                    continue;
                }
                let written = result as usize;
                let started = if written < remaining {
                    // Short write: finish this block before moving on.
                    self.start(slot, write.offset, write.length, write.done + written)
                } else if next_offset < total_bytes {
                    let length = (total_bytes - next_offset).min(WRITE_BYTES as u64) as usize;
                    next_offset += length as u64;
                    self.start(slot, next_offset - length as u64, length, 0)
                } else {
                    Ok(())
                };
                if let Err(error) = started {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Queues the write of `buffers[slot][done..length]` at `offset + done`.
    fn start(
        &mut self,
        slot: usize,
        offset: u64,
        length: usize,
        done: usize,
    ) -> Result<(), PerfError> {
        let buffer = &self.buffers[slot];
        assert!(length <= buffer.len() && done < length);
        let entry = opcode::Write::new(
            types::Fd(self.file.as_raw_fd()),
            // In bounds: `done < length <= buffer.len()`.
            buffer.as_ptr().wrapping_add(done),
            (length - done) as u32,
        )
        .offset(offset + done as u64)
        .build()
        .user_data(slot as u64);
        // SAFETY: the buffer outlives the write: `write_sequentially` does not return while a
        // write is in flight (or leaks the buffers if it must), and the buffers are owned by
        // this writer.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            return Err(PerfError::io(
                "queueing a write for",
                self.path,
                std::io::Error::other("io_uring submission queue is full"),
            ));
        }
        self.in_flight[slot] = Some(PendingWrite {
            offset,
            length,
            done,
        });
        Ok(())
    }
}

/// A heap buffer aligned for O_DIRECT, filled with a non-zero pattern.
struct AlignedBuffer {
    pointer: *mut u8,
    length: usize,
}

impl AlignedBuffer {
    fn new(length: usize, alignment: usize) -> Result<Self, PerfError> {
        let mut pointer: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: `pointer` is a valid out-pointer; alignment is a power of two and a multiple
        // of the pointer size.
        let status = unsafe { libc::posix_memalign(&mut pointer, alignment, length) };
        if status != 0 || pointer.is_null() {
            return Err(PerfError::Allocation {
                bytes: length,
                alignment,
            });
        }
        let pointer = pointer.cast::<u8>();
        // SAFETY: the allocation is `length` bytes long and exclusively ours.
        let bytes = unsafe { std::slice::from_raw_parts_mut(pointer, length) };
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = (index % 251) as u8 ^ 0x5a;
        }
        Ok(AlignedBuffer { pointer, length })
    }

    fn as_ptr(&self) -> *const u8 {
        self.pointer
    }

    fn len(&self) -> usize {
        self.length
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated by posix_memalign in `new`, freed once.
        unsafe { libc::free(self.pointer.cast()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_directory::file_system_name;

    /// A scratch directory that supports O_DIRECT, or `None` (the test is then skipped).
    fn direct_io_dir() -> Option<tempfile::TempDir> {
        let dir = tempfile::tempdir().unwrap();
        if matches!(file_system_name(dir.path()).unwrap(), "tmpfs" | "ramfs") {
            eprintln!("skipping: the temp directory is on tmpfs, which refuses O_DIRECT");
            return None;
        }
        Some(dir)
    }

    #[test]
    fn writes_a_partial_last_block_and_removes_its_file() {
        let Some(dir) = direct_io_dir() else { return };
        let bytes = 3 * WRITE_BYTES as u64 + 8192;
        let result = measure(dir.path(), bytes).unwrap();
        assert_eq!(result.bytes, bytes);
        assert!(result.mb_s() > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rounds_the_size_up_to_the_alignment() {
        let Some(dir) = direct_io_dir() else { return };
        let result = measure(dir.path(), 1000).unwrap();
        assert_eq!(result.bytes, ALIGNMENT_BYTES as u64);
    }
}
