//! The baseline: how fast this disk takes a plain sequential O_DIRECT write, with no engine
//! in the way. Every engine case is reported as a ratio to this number.
//!
//! It drives its own `io_uring` (the `io-uring` crate, not glommio) on the calling thread:
//! one preallocated file, 1 MiB aligned blocks, [`QUEUE_DEPTH`] writes kept in flight, then
//! one fdatasync. The clock covers the writes and the fdatasync, not the open or fallocate.
//! It must never run on a glommio executor thread (it would block it).
//!
//! It also owns the O_DIRECT pieces the other raw measurements share
//! ([`raw_read`](crate::raw_read), [`sync_write`](crate::sync_write)): [`AlignedBuffer`],
//! [`open_direct`], [`preallocate`] and [`SequentialRing`], the loop that keeps
//! [`QUEUE_DEPTH`] sequential reads or writes in flight.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

use crate::error::PerfError;

/// Size of each write (and of each read of [`raw_read`](crate::raw_read)).
pub const BLOCK_BYTES: usize = 1 << 20;
/// Writes (or reads) kept in flight, and the ring's size.
pub const QUEUE_DEPTH: usize = 8;
/// O_DIRECT alignment of buffers, offsets and lengths.
pub const ALIGNMENT_BYTES: usize = 4096;

const _: () = assert!(BLOCK_BYTES % ALIGNMENT_BYTES == 0);
const _: () = assert!(BLOCK_BYTES <= u32::MAX as usize);

/// What a raw sequential write (or [`raw_read`](crate::raw_read)) measured.
#[derive(Clone, Copy, Debug)]
pub struct TransferResult {
    /// Bytes moved (for a write, the request rounded up to [`ALIGNMENT_BYTES`]).
    pub bytes: u64,
    /// Time from the first submission to the last completion (for a write, to the end of
    /// the fdatasync).
    pub elapsed: Duration,
}

impl TransferResult {
    /// Throughput in MB/s (10^6 bytes per second).
    pub fn mb_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Writes `requested_bytes` (rounded up to a multiple of 4096) to a new file in `dir` and
/// returns the time it took. Removes the file afterwards.
pub fn measure(dir: &Path, requested_bytes: u64) -> Result<TransferResult, PerfError> {
    let path = dir.join("raw-write.dat");
    let result = write_file(&path, requested_bytes)?;
    std::fs::remove_file(&path).map_err(|source| PerfError::io("removing", &path, source))?;
    Ok(result)
}

/// Creates `path` (which must not exist) and writes `requested_bytes` (rounded up to a
/// multiple of 4096) to it as [`measure`] does, returning the time it took. Keeps the file.
pub(crate) fn write_file(path: &Path, requested_bytes: u64) -> Result<TransferResult, PerfError> {
    let bytes = requested_bytes.div_ceil(ALIGNMENT_BYTES as u64) * ALIGNMENT_BYTES as u64;
    if bytes == 0 {
        return Err(PerfError::Usage {
            reason: "--bytes must be above 0".into(),
        });
    }
    let file = open_direct(path, OpenOptions::new().write(true).create_new(true))?;
    preallocate(&file, path, bytes)?;
    let mut ring = SequentialRing::new(&file, path, Direction::Write)?;

    let start = Instant::now();
    ring.run(bytes)?;
    file.sync_data()
        .map_err(|source| PerfError::io("fdatasync", path, source))?;
    let elapsed = start.elapsed();
    Ok(TransferResult { bytes, elapsed })
}

/// Opens `path` as `options` say, with O_DIRECT added; a refusal of O_DIRECT is reported as
/// such.
pub(crate) fn open_direct(path: &Path, options: &OpenOptions) -> Result<File, PerfError> {
    options
        .clone()
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
pub(crate) fn preallocate(file: &File, path: &Path, bytes: u64) -> Result<(), PerfError> {
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

/// Which way a [`SequentialRing`] moves bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From the buffers to the file.
    Write,
    /// From the file into the buffers.
    Read,
}

impl Direction {
    /// `"write"` or `"read"`, for error messages.
    fn name(self) -> &'static str {
        match self {
            Direction::Write => "write",
            Direction::Read => "read",
        }
    }
}

/// One transfer in flight: where it goes and how much of it is done.
#[derive(Clone, Copy, Debug)]
struct PendingTransfer {
    offset: u64,
    length: usize,
    /// Bytes of the slot's buffer already moved by earlier (short) completions.
    done: usize,
}

/// Keeps up to [`QUEUE_DEPTH`] sequential O_DIRECT transfers of [`BLOCK_BYTES`] in flight
/// through its own `io_uring`, one per buffer slot, from offset 0 to the end.
pub(crate) struct SequentialRing<'a> {
    ring: IoUring,
    file: &'a File,
    path: &'a Path,
    direction: Direction,
    /// One buffer per slot; the kernel uses `buffers[slot]` while `in_flight[slot]` is set.
    buffers: Vec<AlignedBuffer>,
    in_flight: [Option<PendingTransfer>; QUEUE_DEPTH],
}

impl<'a> SequentialRing<'a> {
    /// Allocates the buffers and the ring (outside any clock) for transfers on `file`,
    /// which must have been opened with [`open_direct`] for `direction`.
    pub(crate) fn new(
        file: &'a File,
        path: &'a Path,
        direction: Direction,
    ) -> Result<Self, PerfError> {
        let buffers = (0..QUEUE_DEPTH)
            .map(|_| AlignedBuffer::new(BLOCK_BYTES, ALIGNMENT_BYTES))
            .collect::<Result<Vec<_>, _>>()?;
        let ring = IoUring::new(QUEUE_DEPTH as u32)
            .map_err(|source| PerfError::io("creating an io_uring for", path, source))?;
        Ok(SequentialRing {
            ring,
            file,
            path,
            direction,
            buffers,
            in_flight: [None; QUEUE_DEPTH],
        })
    }

    /// Moves bytes `0..total_bytes` of the file, in order of submission; returns once every
    /// transfer has completed. `total_bytes` must be a multiple of [`ALIGNMENT_BYTES`].
    pub(crate) fn run(&mut self, total_bytes: u64) -> Result<(), PerfError> {
        assert!(total_bytes % ALIGNMENT_BYTES as u64 == 0);
        let mut next_offset = 0u64;
        let mut first_error: Option<PerfError> = None;
        for slot in 0..QUEUE_DEPTH {
            if next_offset >= total_bytes {
                break;
            }
            let length = (total_bytes - next_offset).min(BLOCK_BYTES as u64) as usize;
            if let Err(error) = self.start(slot, next_offset, length, 0) {
                first_error = Some(error);
                break;
            }
            next_offset += length as u64;
        }
        // Once an error is seen nothing new starts, but the loop still waits for every
        // transfer in flight: the kernel uses our buffers until each one completes.
        while self.in_flight.iter().any(Option::is_some) {
            if let Err(source) = self.ring.submit_and_wait(1) {
                if source.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing more can be reaped through a broken ring, yet transfers may still be
                // using our buffers: leak them rather than free memory the kernel uses.
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
                let transfer = self.in_flight.get_mut(slot).and_then(Option::take);
                let Some(transfer) = transfer else {
                    unreachable!("completion for slot {slot}, which has nothing in flight");
                };
                let remaining = transfer.length - transfer.done;
                let failure = if result < 0 {
                    Some(std::io::Error::from_raw_os_error(-result))
                } else if result == 0 {
                    Some(std::io::Error::from(match self.direction {
                        Direction::Write => std::io::ErrorKind::WriteZero,
                        Direction::Read => std::io::ErrorKind::UnexpectedEof,
                    }))
                } else {
                    None
                };
                if let Some(source) = failure {
                    first_error.get_or_insert(PerfError::RingTransfer {
                        operation: self.direction.name(),
                        path: self.path.to_path_buf(),
                        offset: transfer.offset + transfer.done as u64,
                        length: remaining,
                        source,
                    });
                    continue;
                }
                if first_error.is_some() {
                    continue;
                }
                let moved = result as usize;
                let started = if moved < remaining {
                    // Short transfer: finish this block before moving on.
                    self.start(
                        slot,
                        transfer.offset,
                        transfer.length,
                        transfer.done + moved,
                    )
                } else if next_offset < total_bytes {
                    let length = (total_bytes - next_offset).min(BLOCK_BYTES as u64) as usize;
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

    /// Queues the transfer of `buffers[slot][done..length]` at file offset `offset + done`.
    fn start(
        &mut self,
        slot: usize,
        offset: u64,
        length: usize,
        done: usize,
    ) -> Result<(), PerfError> {
        let fd = types::Fd(self.file.as_raw_fd());
        let buffer = &mut self.buffers[slot];
        assert!(length <= buffer.len() && done < length);
        let entry = match self.direction {
            // In bounds: `done < length <= buffer.len()`.
            Direction::Write => opcode::Write::new(
                fd,
                buffer.as_ptr().wrapping_add(done),
                (length - done) as u32,
            )
            .offset(offset + done as u64)
            .build(),
            Direction::Read => opcode::Read::new(
                fd,
                buffer.as_mut_ptr().wrapping_add(done),
                (length - done) as u32,
            )
            .offset(offset + done as u64)
            .build(),
        }
        .user_data(slot as u64);
        // SAFETY: the buffer outlives the transfer: `run` does not return while a transfer is
        // in flight (or leaks the buffers if it must), and the buffers are owned by this ring;
        // nothing else touches `buffers[slot]` while `in_flight[slot]` is set.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            return Err(PerfError::io(
                "queueing a transfer for",
                self.path,
                std::io::Error::other("io_uring submission queue is full"),
            ));
        }
        self.in_flight[slot] = Some(PendingTransfer {
            offset,
            length,
            done,
        });
        Ok(())
    }
}

/// A heap buffer aligned for O_DIRECT, filled with a non-zero pattern.
pub(crate) struct AlignedBuffer {
    pointer: *mut u8,
    length: usize,
}

impl AlignedBuffer {
    /// `length` bytes aligned to `alignment` (a power of two, a multiple of the pointer
    /// size), filled with a non-zero pattern.
    pub(crate) fn new(length: usize, alignment: usize) -> Result<Self, PerfError> {
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

    /// The start of the buffer, for the kernel to read from.
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.pointer
    }

    /// The start of the buffer, for the kernel to write into.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pointer
    }

    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
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
    use crate::run_directory::disk_test_dir;

    #[test]
    fn writes_a_partial_last_block_and_removes_its_file() {
        let dir = disk_test_dir("raw-write");
        let bytes = 3 * BLOCK_BYTES as u64 + 8192;
        let result = measure(dir.path(), bytes).unwrap();
        assert_eq!(result.bytes, bytes);
        assert!(result.mb_s() > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rounds_the_size_up_to_the_alignment() {
        let dir = disk_test_dir("raw-write");
        let result = measure(dir.path(), 1000).unwrap();
        assert_eq!(result.bytes, ALIGNMENT_BYTES as u64);
    }

    #[test]
    fn write_file_keeps_the_file_and_refuses_an_existing_one() {
        let dir = disk_test_dir("raw-write");
        let path = dir.path().join("kept.dat");
        let result = write_file(&path, BLOCK_BYTES as u64 + 4096).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), result.bytes);
        assert!(matches!(write_file(&path, 4096), Err(PerfError::Io { .. })));
    }
}
