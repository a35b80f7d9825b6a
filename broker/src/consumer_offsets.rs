//! [`ConsumerOffsetStore`]: the durable consumer offsets of one shard, `(consumer group,
//! topic, queue) -> next offset to consume`, for the queues this shard owns.
//!
//! # What it owns
//!
//! The offsets in memory (answered at once by [`ConsumerOffsetStore::get`]) and two files
//! in the shard directory, `consumer-offsets.0` and `consumer-offsets.1`. It knows nothing
//! about sockets, the wire protocol or other shards; like the storage engine it is used
//! from the one executor that opened it (`Rc`/`Cell`/`RefCell`, no locks, no atomics).
//! It does not check that a topic or queue exists: the caller routes a commit to the shard
//! owning the queue and checks it there.
//!
//! # Why two slot files
//!
//! Every write stores the *whole* state (every entry) into one slot, never the slot that
//! holds the latest valid state; the slots alternate. Each slot carries a generation
//! (+1 per write), its own length and a CRC over all of it. On open both are read and the
//! valid one with the highest generation wins. So:
//!
//! * **No rename and no directory fsync per write.** The replace-by-rename pattern needs a
//!   temp file, `fsync`, `rename` and a directory `fsync` on every change; here a commit
//!   costs one `write` + `fdatasync` of an already existing file. (The directory is synced
//!   once, when `open` creates the slot files.)
//! * **A torn write loses nothing acknowledged.** A crash in the middle of a write can only
//!   damage the slot being written, whose CRC then fails; the other slot still holds the
//!   previous generation, which includes every commit acknowledged so far (a commit is only
//!   acknowledged after the write that includes it is synced, and the next write goes to
//!   the other slot).
//! * **Shrinking is harmless.** A smaller state leaves stale bytes of an older, larger one
//!   past its end; the reader uses the recorded length, and the CRC covers it.
//!
//! Writing the whole state each time is the price: it suits the thousands to hundreds of
//! thousands of entries a shard holds (an entry is a few dozen bytes), and is bounded by
//! `max_entries` (at most [`MAX_ENTRIES`]).
//!
//! # Group commit
//!
//! [`ConsumerOffsetStore::commit`] changes memory at once and then waits for a write that
//! *started after* the change. One writer task per store runs at a time: it takes the
//! current state, writes and syncs it, resolves every commit that joined before the write
//! started, and repeats while there are newer changes. Commits arriving while a write is in
//! flight all share the next one, so at most one write is in flight and a burst of N
//! commits costs about two writes, not N.
//!
//! A failed write fails the commits waiting on it (their outcome is unknown: the slot may or
//! may not hold them); the next commit tries again, into the same slot, which is safe
//! because that slot never holds the latest valid state.
//!
//! # I/O
//!
//! All file I/O goes through glommio's DMA files (io_uring, O_DIRECT): 4 KiB-aligned
//! positions and lengths, buffers from `alloc_dma_buffer`, so a commit never blocks the
//! executor thread. `open` relies on the storage engine having opened the same shard
//! directory first on this executor: the engine checks that the device takes O_DIRECT and
//! primes glommio's per-device io-poll probe with a non-empty file (an empty slot file
//! opened first would mislead that probe).
//!
//! # File format (little endian)
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `SPCO` |
//! | 4 | format version (1) |
//! | 4 | total length: header, entries and CRC |
//! | 8 | generation (1 for the first write) |
//! | 4 | entry count |
//! | … | entries: group length (u8), group, topic length (u8), topic, queue (u32), offset (u64) |
//! | 4 | CRC-32 of every byte before it |
//!
//! then zeros up to a multiple of 4096.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

use glommio::io::DmaFile;
use spillway_storage::BLOCK_BYTES;
use spillway_wire::ErrorCode;

/// Longest consumer group or topic name stored, in bytes (a length is one byte).
pub const MAX_NAME_BYTES: usize = 255;
/// Highest `max_entries` a store may be opened with.
pub const MAX_ENTRIES: usize = 1 << 20;
/// The slot files, in the shard directory.
pub const SLOT_FILE_NAMES: [&str; 2] = ["consumer-offsets.0", "consumer-offsets.1"];

const MAGIC: u32 = u32::from_le_bytes(*b"SPCO");
const FORMAT_VERSION: u32 = 1;
/// magic, version, total length, generation, entry count.
const HEADER_BYTES: usize = 4 + 4 + 4 + 8 + 4;
const CRC_BYTES: usize = 4;
/// The largest entry: two names of [`MAX_NAME_BYTES`] with their lengths, queue, offset.
const MAX_ENTRY_BYTES: usize = 1 + MAX_NAME_BYTES + 1 + MAX_NAME_BYTES + 4 + 8;
/// The largest content a slot can hold; a recorded length above it is damage.
const MAX_SLOT_BYTES: usize = HEADER_BYTES + MAX_ENTRIES * MAX_ENTRY_BYTES + CRC_BYTES;
const BLOCK: usize = BLOCK_BYTES as usize;

// A name's length is stored in one byte.
const _: () = assert!(MAX_NAME_BYTES <= u8::MAX as usize);
// The total length and the entry count are u32.
const _: () = assert!(MAX_SLOT_BYTES <= u32::MAX as usize);
// The header is read with one aligned block.
const _: () = assert!(HEADER_BYTES <= BLOCK);

/// Why a consumer offset operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OffsetStoreError {
    /// A consumer group or topic name is empty or too long.
    #[error("invalid {what} name: {reason}")]
    BadName {
        /// `"consumer group"` or `"topic"`
        what: &'static str,
        /// what is wrong
        reason: String,
    },
    /// The commit names a new (group, topic, queue) and the shard already holds its limit.
    #[error("this shard already holds its limit of {limit} consumer offsets")]
    TooManyEntries {
        /// the store's `max_entries`
        limit: usize,
    },
    /// The store was closed; nothing more is written.
    #[error("the consumer offset store is closed")]
    Closed,
    /// A file operation failed.
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
    /// Offsets were stored, but no slot file holds a valid copy of them.
    #[error("consumer offsets in {path} are damaged: {reason}")]
    Corrupt {
        /// a damaged slot file
        path: PathBuf,
        /// what is wrong with each slot, and what to do
        reason: String,
    },
}

impl OffsetStoreError {
    /// The code a response carries for this error. No wire code names "too many consumer
    /// offsets", so [`OffsetStoreError::TooManyEntries`] is an `InvalidArgument` whose detail
    /// names the limit.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            OffsetStoreError::BadName { .. } | OffsetStoreError::TooManyEntries { .. } => {
                ErrorCode::InvalidArgument
            }
            OffsetStoreError::Closed => ErrorCode::ServiceUnavailable,
            OffsetStoreError::Io { .. } => ErrorCode::Internal,
            OffsetStoreError::Corrupt { .. } => ErrorCode::StorageDamaged,
        }
    }
}

fn io_error<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(glommio::GlommioError<()>) -> OffsetStoreError + 'a {
    move |error| OffsetStoreError::Io {
        operation,
        path: path.to_owned(),
        source: error.into(),
    }
}

/// `topic -> group -> queue -> offset`. Topic first, so that dropping a topic is one
/// removal. Ordered, so that the same state always encodes to the same bytes.
type Offsets = BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>;

/// A handle to one shard's consumer offsets; clones share the store. See the module docs.
#[derive(Clone)]
pub struct ConsumerOffsetStore {
    inner: Rc<Inner>,
}

struct Inner {
    paths: [PathBuf; 2],
    /// `None` once closed.
    files: RefCell<Option<[Rc<DmaFile>; 2]>>,
    max_entries: usize,
    offsets: RefCell<Offsets>,
    entries: Cell<usize>,
    /// Changes made in memory so far.
    changes: Cell<u64>,
    /// `changes` as of the start of the latest completed write: everything up to it is
    /// durable.
    durable_changes: Cell<u64>,
    /// Generation of the latest valid slot (0: none yet).
    generation: Cell<u64>,
    /// Which slot holds it.
    latest_slot: Cell<Option<usize>>,
    /// The writer task is running.
    writing: Cell<bool>,
    /// Writes completed (written and synced).
    writes: Cell<u64>,
    closed: Cell<bool>,
    /// What commits made now wait for: the next write to start.
    next_write: RefCell<Rc<WriteOutcome>>,
}

/// The outcome of one write, shared by the commits it carries.
#[derive(Default)]
struct WriteOutcome {
    result: RefCell<Option<Result<(), Rc<WriteFailure>>>>,
    wakers: RefCell<Vec<Waker>>,
    waiters: Cell<usize>,
}

struct WriteFailure {
    operation: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

impl WriteOutcome {
    fn finish(&self, result: Result<(), Rc<WriteFailure>>) {
        assert!(
            self.result.borrow().is_none(),
            "a write outcome is finished once"
        );
        *self.result.borrow_mut() = Some(result);
        for waker in std::mem::take(&mut *self.wakers.borrow_mut()) {
            waker.wake();
        }
    }

    async fn wait(self: Rc<Self>) -> Result<(), OffsetStoreError> {
        futures_lite::future::poll_fn(|context| match &*self.result.borrow() {
            Some(result) => Poll::Ready(result.clone()),
            None => {
                self.wakers.borrow_mut().push(context.waker().clone());
                Poll::Pending
            }
        })
        .await
        .map_err(|failure| OffsetStoreError::Io {
            operation: failure.operation,
            path: failure.path.clone(),
            // Each waiter gets its own copy of the OS error.
            source: match failure.source.raw_os_error() {
                Some(code) => std::io::Error::from_raw_os_error(code),
                None => std::io::Error::new(failure.source.kind(), failure.source.to_string()),
            },
        })
    }
}

/// What `open` found in one slot file.
enum Slot {
    /// Absent or empty: never written.
    Blank,
    /// Present but not a whole, intact state.
    Invalid(String),
    /// An intact state.
    Valid(Snapshot),
}

/// A decoded slot.
#[derive(Debug, PartialEq)]
struct Snapshot {
    generation: u64,
    entries: usize,
    offsets: Offsets,
}

impl ConsumerOffsetStore {
    /// Opens (creating if needed) the consumer offsets of the shard whose directory is
    /// `shard_dir`, loading the latest valid state; a shard may hold at most `max_entries`
    /// offsets. Must run inside the glommio executor of the shard, after its storage engine
    /// was opened (see the module docs).
    ///
    /// A slot that is present but damaged is skipped with a warning; if no slot is valid
    /// although one holds data, the offsets are not silently dropped:
    /// [`OffsetStoreError::Corrupt`].
    ///
    /// # Panics
    ///
    /// If `max_entries` is not in `1 ..= MAX_ENTRIES`.
    pub async fn open(
        shard_dir: &Path,
        max_entries: usize,
    ) -> Result<ConsumerOffsetStore, OffsetStoreError> {
        assert!(
            (1..=MAX_ENTRIES).contains(&max_entries),
            "max_entries {max_entries} is outside 1 to {MAX_ENTRIES} (MAX_ENTRIES)"
        );
        // glommio opens relative paths against an invalid directory descriptor (EBADF).
        let shard_dir = std::path::absolute(shard_dir).map_err(|source| OffsetStoreError::Io {
            operation: "resolve shard directory",
            path: shard_dir.to_owned(),
            source,
        })?;
        let paths = SLOT_FILE_NAMES.map(|name| shard_dir.join(name));
        let (file_0, slot_0, created_0) = open_slot(&paths[0]).await?;
        let (file_1, slot_1, created_1) = open_slot(&paths[1]).await?;
        if created_0 || created_1 {
            // Make the new files' directory entries durable, once.
            let directory = glommio::io::Directory::open(&shard_dir)
                .await
                .map_err(io_error("open shard directory", &shard_dir))?;
            directory
                .sync()
                .await
                .map_err(io_error("sync shard directory", &shard_dir))?;
            directory
                .close()
                .await
                .map_err(io_error("close shard directory", &shard_dir))?;
        }

        let mut slots = [slot_0, slot_1];
        let latest_slot = choose_slot(&slots, &paths)?;
        let snapshot =
            match latest_slot.map(|index| std::mem::replace(&mut slots[index], Slot::Blank)) {
                Some(Slot::Valid(snapshot)) => snapshot,
                Some(_) => unreachable!("choose_slot returns a valid slot"),
                None => Snapshot {
                    generation: 0,
                    entries: 0,
                    offsets: Offsets::new(),
                },
            };
        if snapshot.entries > max_entries {
            tracing::warn!(
                entries = snapshot.entries,
                max_entries,
                "the stored consumer offsets exceed the limit; kept, but new ones are refused"
            );
        }
        Ok(ConsumerOffsetStore {
            inner: Rc::new(Inner {
                paths,
                files: RefCell::new(Some([Rc::new(file_0), Rc::new(file_1)])),
                max_entries,
                offsets: RefCell::new(snapshot.offsets),
                entries: Cell::new(snapshot.entries),
                changes: Cell::new(0),
                durable_changes: Cell::new(0),
                generation: Cell::new(snapshot.generation),
                latest_slot: Cell::new(latest_slot),
                writing: Cell::new(false),
                writes: Cell::new(0),
                closed: Cell::new(false),
                next_write: RefCell::new(Rc::default()),
            }),
        })
    }

    /// The next offset `group` consumes from `queue` of `topic`, if one was committed.
    pub fn get(&self, group: &str, topic: &str, queue: u32) -> Option<u64> {
        self.inner
            .offsets
            .borrow()
            .get(topic)?
            .get(group)?
            .get(&queue)
            .copied()
    }

    /// Sets the next offset `group` consumes from `queue` of `topic` (it may go backwards:
    /// consumers reset). Memory changes when this is *called*, before the future is polled,
    /// so a `get` right after sees the new offset; the future resolves once a write and
    /// fdatasync that include the change completed (group commit, see the module docs).
    ///
    /// Refused without any change: names that are empty or longer than [`MAX_NAME_BYTES`]
    /// ([`OffsetStoreError::BadName`]), a new key beyond `max_entries`
    /// ([`OffsetStoreError::TooManyEntries`]), a closed store ([`OffsetStoreError::Closed`]).
    pub fn commit(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> impl Future<Output = Result<(), OffsetStoreError>> + 'static {
        let joined = self.apply_commit(group, topic, queue, offset);
        async move { joined?.wait().await }
    }

    /// Changes memory and joins the next write.
    fn apply_commit(
        &self,
        group: &str,
        topic: &str,
        queue: u32,
        offset: u64,
    ) -> Result<Rc<WriteOutcome>, OffsetStoreError> {
        let inner = &self.inner;
        if inner.closed.get() {
            return Err(OffsetStoreError::Closed);
        }
        check_name("consumer group", group)?;
        check_name("topic", topic)?;
        {
            let mut offsets = inner.offsets.borrow_mut();
            let existing = offsets
                .get_mut(topic)
                .and_then(|groups| groups.get_mut(group))
                .and_then(|queues| queues.get_mut(&queue));
            match existing {
                Some(stored) => *stored = offset,
                None => {
                    if inner.entries.get() >= inner.max_entries {
                        return Err(OffsetStoreError::TooManyEntries {
                            limit: inner.max_entries,
                        });
                    }
                    offsets
                        .entry(topic.to_owned())
                        .or_default()
                        .entry(group.to_owned())
                        .or_default()
                        .insert(queue, offset);
                    inner.entries.set(inner.entries.get() + 1);
                }
            }
        }
        inner.changes.set(inner.changes.get() + 1);
        let outcome = inner.next_write.borrow().clone();
        outcome.waiters.set(outcome.waiters.get() + 1);
        self.start_writer();
        Ok(outcome)
    }

    /// Drops every offset of `topic` (a deleted topic). The change is written soon (a write
    /// is scheduled), and at the latest by the next commit or [`ConsumerOffsetStore::close`].
    /// After `close` it changes memory only.
    pub fn remove_topic(&self, topic: &str) {
        let inner = &self.inner;
        let Some(groups) = inner.offsets.borrow_mut().remove(topic) else {
            return;
        };
        let removed: usize = groups.values().map(BTreeMap::len).sum();
        inner.entries.set(inner.entries.get() - removed);
        inner.changes.set(inner.changes.get() + 1);
        if !inner.closed.get() {
            self.start_writer();
        }
    }

    /// The topics the store holds offsets of, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.inner.offsets.borrow().keys().cloned().collect()
    }

    /// How many (group, topic, queue) offsets the store holds.
    pub fn entries(&self) -> usize {
        self.inner.entries.get()
    }

    /// How many writes (write + fdatasync of a slot) completed since open.
    pub fn writes(&self) -> u64 {
        self.inner.writes.get()
    }

    /// The generation of the latest state on disk (0 when nothing was ever written).
    pub fn generation(&self) -> u64 {
        self.inner.generation.get()
    }

    /// Waits for any write in flight, writes once more if memory holds changes not yet
    /// durable, and closes the files. Commits after this fail with
    /// [`OffsetStoreError::Closed`].
    pub async fn close(&self) -> Result<(), OffsetStoreError> {
        let inner = &self.inner;
        inner.closed.set(true);
        let dirty = inner.changes.get() != inner.durable_changes.get();
        let result = if dirty || inner.writing.get() {
            let outcome = inner.next_write.borrow().clone();
            outcome.waiters.set(outcome.waiters.get() + 1);
            self.start_writer();
            outcome.wait().await
        } else {
            Ok(())
        };
        if inner.writing.get() {
            // Another close restarted the writer; that one closes the files.
            return result;
        }
        let files = inner.files.borrow_mut().take();
        if let Some(files) = files {
            for (file, path) in files.into_iter().zip(&inner.paths) {
                file.close_rc()
                    .await
                    .map_err(io_error("close consumer offsets file", path))?;
            }
        }
        result
    }

    fn start_writer(&self) {
        if !self.inner.writing.replace(true) {
            // Detached: the writer finishes its writes even if every committer went away.
            drop(glommio::spawn_local(run_writer(self.inner.clone())).detach());
        }
    }
}

/// The writer task: writes the whole state while there are changes not yet written.
async fn run_writer(inner: Rc<Inner>) {
    loop {
        let changes = inner.changes.get();
        let outcome = inner.next_write.replace(Rc::default());
        if changes == inner.durable_changes.get() {
            // Everything is durable: whoever waits for the next write is served already.
            outcome.finish(Ok(()));
            break;
        }
        let generation = inner.generation.get() + 1;
        let slot = match inner.latest_slot.get() {
            Some(latest) => 1 - latest,
            None => 0,
        };
        let content = encode(generation, inner.entries.get(), &inner.offsets.borrow());
        match write_slot(&inner, slot, &content).await {
            Ok(()) => {
                inner.durable_changes.set(changes);
                inner.generation.set(generation);
                inner.latest_slot.set(Some(slot));
                inner.writes.set(inner.writes.get() + 1);
                outcome.finish(Ok(()));
            }
            Err(failure) => {
                tracing::warn!(
                    path = %failure.path.display(),
                    operation = failure.operation,
                    error = %failure.source,
                    "consumer offsets write failed"
                );
                outcome.finish(Err(Rc::new(failure)));
                // Retry only for commits that joined during the failed write; later ones
                // start a new writer.
                if inner.next_write.borrow().waiters.get() == 0 {
                    break;
                }
            }
        }
    }
    inner.writing.set(false);
}

/// Writes `content`, zero-padded to whole blocks, at the start of slot `slot`, and syncs it.
async fn write_slot(inner: &Inner, slot: usize, content: &[u8]) -> Result<(), WriteFailure> {
    let path = &inner.paths[slot];
    let failure = |operation, source| WriteFailure {
        operation,
        path: path.clone(),
        source,
    };
    let file = inner
        .files
        .borrow()
        .as_ref()
        .map(|files| files[slot].clone());
    let Some(file) = file else {
        return Err(failure(
            "write consumer offsets",
            std::io::Error::other("the store is closed"),
        ));
    };
    let length = content.len().next_multiple_of(BLOCK);
    let mut buffer = file.alloc_dma_buffer(length);
    let bytes = buffer.as_bytes_mut();
    bytes[..content.len()].copy_from_slice(content);
    bytes[content.len()..].fill(0);
    let written = file
        .write_at(buffer, 0)
        .await
        .map_err(|error| failure("write consumer offsets", error.into()))?;
    if written != length {
        return Err(failure(
            "write consumer offsets",
            std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {length} bytes"),
            ),
        ));
    }
    file.fdatasync()
        .await
        .map_err(|error| failure("sync consumer offsets", error.into()))
}

/// Opens (creating it if absent) and reads one slot file; also says whether it was created.
async fn open_slot(path: &Path) -> Result<(DmaFile, Slot, bool), OffsetStoreError> {
    let existed = path.try_exists().map_err(|source| OffsetStoreError::Io {
        operation: "look for consumer offsets file",
        path: path.to_owned(),
        source,
    })?;
    let file = glommio::io::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(io_error("open consumer offsets file", path))?;
    let slot = read_slot(&file, path).await?;
    if let Slot::Invalid(reason) = &slot {
        tracing::warn!(path = %path.display(), %reason, "consumer offsets slot damaged; ignoring it");
    }
    Ok((file, slot, !existed))
}

/// Reads one slot file. I/O errors are errors; damage is [`Slot::Invalid`].
async fn read_slot(file: &DmaFile, path: &Path) -> Result<Slot, OffsetStoreError> {
    let size = file
        .file_size()
        .await
        .map_err(io_error("stat consumer offsets file", path))?;
    if size == 0 {
        return Ok(Slot::Blank);
    }
    let head = file
        .read_at_aligned(0, BLOCK)
        .await
        .map_err(io_error("read consumer offsets file", path))?;
    let total = match recorded_length(&head) {
        Ok(total) => total,
        Err(reason) => return Ok(Slot::Invalid(reason)),
    };
    let decoded = if total <= head.len() {
        decode(&head)
    } else {
        let whole = file
            .read_at_aligned(0, total.next_multiple_of(BLOCK))
            .await
            .map_err(io_error("read consumer offsets file", path))?;
        decode(&whole)
    };
    Ok(match decoded {
        Ok(snapshot) => Slot::Valid(snapshot),
        Err(reason) => Slot::Invalid(reason),
    })
}

/// The valid slot with the highest generation; `None` when no slot was ever written;
/// [`OffsetStoreError::Corrupt`] when slots hold data but none is valid.
fn choose_slot(slots: &[Slot; 2], paths: &[PathBuf; 2]) -> Result<Option<usize>, OffsetStoreError> {
    let generation = |index: usize| match &slots[index] {
        Slot::Valid(snapshot) => Some(snapshot.generation),
        _ => None,
    };
    match (generation(0), generation(1)) {
        (Some(first), Some(second)) => {
            if first == second {
                tracing::warn!(
                    generation = first,
                    "both consumer offsets slots have the same generation; using {}",
                    SLOT_FILE_NAMES[0]
                );
            }
            Ok(Some(if second > first { 1 } else { 0 }))
        }
        (Some(_), None) => Ok(Some(0)),
        (None, Some(_)) => Ok(Some(1)),
        (None, None) => {
            let Some(damaged) = slots
                .iter()
                .position(|slot| matches!(slot, Slot::Invalid(_)))
            else {
                return Ok(None);
            };
            let describe = |index: usize| match &slots[index] {
                Slot::Blank => format!("{} is absent or empty", SLOT_FILE_NAMES[index]),
                Slot::Invalid(reason) => format!("{} {reason}", SLOT_FILE_NAMES[index]),
                Slot::Valid(_) => unreachable!("no slot is valid here"),
            };
            Err(OffsetStoreError::Corrupt {
                path: paths[damaged].clone(),
                reason: format!(
                    "{}; {}; no valid copy is left. Restore the files, or remove both to \
                     start with no committed offsets",
                    describe(0),
                    describe(1)
                ),
            })
        }
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), OffsetStoreError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(OffsetStoreError::BadName {
            what,
            reason: format!(
                "must be 1 to {MAX_NAME_BYTES} bytes long, not {} bytes",
                name.len()
            ),
        });
    }
    Ok(())
}

/// The slot content for `offsets` at `generation`; `entries` is the number of offsets.
fn encode(generation: u64, entries: usize, offsets: &Offsets) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + entries * 48 + CRC_BYTES);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // total length, patched below
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(entries as u32).to_le_bytes());
    let mut written = 0;
    for (topic, groups) in offsets {
        for (group, queues) in groups {
            for (queue, offset) in queues {
                // Names were checked on commit: 1 to MAX_NAME_BYTES bytes.
                out.push(group.len() as u8);
                out.extend_from_slice(group.as_bytes());
                out.push(topic.len() as u8);
                out.extend_from_slice(topic.as_bytes());
                out.extend_from_slice(&queue.to_le_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                written += 1;
            }
        }
    }
    assert_eq!(written, entries, "the entry count matches the offsets");
    let total = out.len() + CRC_BYTES;
    assert!(total <= MAX_SLOT_BYTES, "a slot fits MAX_SLOT_BYTES");
    out[8..12].copy_from_slice(&(total as u32).to_le_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The total length a slot's header records, checked against magic, version and bounds.
fn recorded_length(bytes: &[u8]) -> Result<usize, String> {
    let mut reader = Reader { bytes, at: 0 };
    let short = || format!("is too short for a header ({} bytes)", bytes.len());
    let magic = reader.u32().ok_or_else(short)?;
    if magic != MAGIC {
        return Err(format!("has a bad magic number {magic:#010x}"));
    }
    let version = reader.u32().ok_or_else(short)?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "has format version {version}; this broker reads version {FORMAT_VERSION}"
        ));
    }
    let total = reader.u32().ok_or_else(short)? as usize;
    if !(HEADER_BYTES + CRC_BYTES..=MAX_SLOT_BYTES).contains(&total) {
        return Err(format!("records an impossible length of {total} bytes"));
    }
    Ok(total)
}

/// Decodes a slot's content (`bytes` may run past it: stale bytes or padding).
fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    let total = recorded_length(bytes)?;
    let Some(content) = bytes.get(..total) else {
        return Err(format!(
            "is short: it records {total} bytes but holds {}",
            bytes.len()
        ));
    };
    let (body, crc) = content.split_at(total - CRC_BYTES);
    let stored_crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed_crc = crc32fast::hash(body);
    if stored_crc != computed_crc {
        return Err(format!(
            "fails its CRC (stored {stored_crc:#010x}, computed {computed_crc:#010x})"
        ));
    }
    let malformed = |what: &str| format!("is malformed (CRC intact): {what}");
    let mut reader = Reader {
        bytes: body,
        at: 12,
    };
    let generation = reader.u64().ok_or_else(|| malformed("no generation"))?;
    let entries = reader.u32().ok_or_else(|| malformed("no entry count"))? as usize;
    let mut offsets = Offsets::new();
    for index in 0..entries {
        let group = reader
            .name()
            .ok_or_else(|| malformed(&format!("entry {index}: bad group name")))?;
        let topic = reader
            .name()
            .ok_or_else(|| malformed(&format!("entry {index}: bad topic name")))?;
        let queue = reader
            .u32()
            .ok_or_else(|| malformed(&format!("entry {index}: no queue")))?;
        let offset = reader
            .u64()
            .ok_or_else(|| malformed(&format!("entry {index}: no offset")))?;
        let previous = offsets
            .entry(topic)
            .or_default()
            .entry(group)
            .or_default()
            .insert(queue, offset);
        if previous.is_some() {
            return Err(malformed(&format!("entry {index} is a duplicate")));
        }
    }
    if reader.at != body.len() {
        return Err(malformed(&format!(
            "{} bytes after the last entry",
            body.len() - reader.at
        )));
    }
    Ok(Snapshot {
        generation,
        entries,
        offsets,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(length)?)?;
        self.at += length;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A length-prefixed name of 1 ..= [`MAX_NAME_BYTES`] bytes of UTF-8.
    fn name(&mut self) -> Option<String> {
        let length = usize::from(*self.take(1)?.first()?);
        if length == 0 {
            return None;
        }
        String::from_utf8(self.take(length)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `body` to completion on a fresh glommio executor.
    fn run<F, Fut>(body: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(body)
            .expect("spawn executor")
            .join()
            .expect("executor thread");
    }

    /// A fresh shard directory on the checkout's disk (tmpfs refuses O_DIRECT).
    fn shard_dir() -> tempfile::TempDir {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        std::fs::create_dir_all(&base).expect("create target/tmp");
        tempfile::Builder::new()
            .prefix("consumer-offsets")
            .tempdir_in(base)
            .expect("create test dir")
    }

    /// What the storage engine does before the store is opened: open a non-empty file with
    /// O_DIRECT first, so glommio's io-poll probe sees a real read.
    async fn prime_device(dir: &Path) {
        let path = dir.join(".direct-io-probe");
        std::fs::write(&path, vec![0u8; BLOCK]).expect("write probe");
        let file = DmaFile::open(&path).await.expect("open probe");
        file.read_at_aligned(0, BLOCK).await.expect("read probe");
        file.close().await.expect("close probe");
    }

    async fn open(dir: &Path, max_entries: usize) -> ConsumerOffsetStore {
        prime_device(dir).await;
        ConsumerOffsetStore::open(dir, max_entries)
            .await
            .expect("open store")
    }

    fn flip_byte(path: &Path, at: usize) {
        let mut bytes = std::fs::read(path).expect("read slot");
        bytes[at] ^= 0x40;
        std::fs::write(path, bytes).expect("write slot");
    }

    #[test]
    fn encode_decode_round_trip_and_every_byte_is_checked() {
        let mut offsets = Offsets::new();
        offsets
            .entry("orders".into())
            .or_default()
            .entry("billing".into())
            .or_default()
            .extend([(0, 5), (3, u64::MAX)]);
        offsets
            .entry("t".repeat(MAX_NAME_BYTES))
            .or_default()
            .entry("g".repeat(MAX_NAME_BYTES))
            .or_default()
            .insert(u32::MAX, 0);
        let encoded = encode(7, 3, &offsets);
        let expected = Snapshot {
            generation: 7,
            entries: 3,
            offsets,
        };
        assert_eq!(decode(&encoded), Ok(expected));
        for at in 0..encoded.len() {
            let mut damaged = encoded.clone();
            damaged[at] ^= 1;
            assert!(
                decode(&damaged).is_err(),
                "flipped byte {at} went unnoticed"
            );
        }
        assert!(decode(&encoded[..encoded.len() - 1]).is_err(), "truncated");
    }

    #[test]
    fn decode_uses_the_recorded_length_past_which_stale_bytes_lie() {
        let mut large = Offsets::new();
        for queue in 0..50 {
            large
                .entry("orders".into())
                .or_default()
                .entry("billing".into())
                .or_default()
                .insert(queue, u64::from(queue) * 10);
        }
        let mut small = Offsets::new();
        small
            .entry("orders".into())
            .or_default()
            .entry("billing".into())
            .or_default()
            .insert(1, 1);
        // The small state written over the start of the large one, as in a reused slot.
        let mut slot = encode(1, 50, &large);
        let newer = encode(2, 1, &small);
        assert!(newer.len() < slot.len());
        slot[..newer.len()].copy_from_slice(&newer);
        let decoded = decode(&slot).expect("decode");
        assert_eq!(decoded.generation, 2);
        assert_eq!(decoded.offsets, small);
    }

    #[test]
    fn commit_is_visible_at_once_and_survives_reopen() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 100).await;
            assert_eq!(store.get("billing", "orders", 0), None);
            let commit = store.commit("billing", "orders", 0, 42);
            assert_eq!(
                store.get("billing", "orders", 0),
                Some(42),
                "before polling"
            );
            commit.await.expect("commit");
            store
                .commit("billing", "orders", 3, 7)
                .await
                .expect("commit");
            store
                .commit("audit", "orders", 0, 1000)
                .await
                .expect("commit");
            // Offsets may go backwards.
            store
                .commit("billing", "orders", 0, 40)
                .await
                .expect("commit");
            assert_eq!(store.entries(), 3);
            assert_eq!(store.writes(), 4);
            store.close().await.expect("close");

            let reopened = open(dir.path(), 100).await;
            assert_eq!(reopened.get("billing", "orders", 0), Some(40));
            assert_eq!(reopened.get("billing", "orders", 3), Some(7));
            assert_eq!(reopened.get("audit", "orders", 0), Some(1000));
            assert_eq!(reopened.get("audit", "orders", 3), None);
            assert_eq!(reopened.entries(), 3);
            assert_eq!(reopened.generation(), 4);
            reopened.close().await.expect("close");
        });
    }

    #[test]
    fn concurrent_commits_share_writes() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 1000).await;
            let tasks: Vec<_> = (0..100u32)
                .map(|queue| {
                    let store = store.clone();
                    glommio::spawn_local(async move {
                        store
                            .commit("group", "orders", queue, u64::from(queue) + 1)
                            .await
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("commit");
            }
            let writes = store.writes();
            assert!(
                (1..=2).contains(&writes),
                "100 commits took {writes} writes"
            );
            store.close().await.expect("close");
            let reopened = open(dir.path(), 1000).await;
            assert_eq!(reopened.entries(), 100);
            for queue in 0..100 {
                assert_eq!(
                    reopened.get("group", "orders", queue),
                    Some(u64::from(queue) + 1)
                );
            }
            reopened.close().await.expect("close");
        });
    }

    #[test]
    fn commit_during_a_write_waits_for_the_next_write() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 100).await;
            let first = store.commit("group", "orders", 0, 1);
            // Let the writer start the first write (it then waits on the disk).
            futures_lite::future::yield_now().await;
            assert_eq!(store.writes(), 0, "the first write is in flight");
            let second = store.commit("group", "orders", 0, 2);
            first.await.expect("first commit");
            assert_eq!(store.writes(), 1);
            assert_eq!(store.generation(), 1);
            second.await.expect("second commit");
            assert_eq!(store.writes(), 2, "the in-flight write did not carry it");
            assert_eq!(store.generation(), 2);
            store.close().await.expect("close");
            assert_eq!(store.writes(), 2, "nothing left to write at close");
        });
    }

    #[test]
    fn corrupt_newest_slot_falls_back_to_the_older_generation() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 100).await;
            store.commit("group", "orders", 0, 1).await.expect("commit");
            store.commit("group", "orders", 0, 2).await.expect("commit");
            assert_eq!(store.generation(), 2);
            store.close().await.expect("close");
            // Generation 1 went to slot 0, generation 2 to slot 1.
            flip_byte(&dir.path().join(SLOT_FILE_NAMES[1]), HEADER_BYTES + 3);

            let reopened = open(dir.path(), 100).await;
            assert_eq!(reopened.generation(), 1);
            assert_eq!(reopened.get("group", "orders", 0), Some(1));
            // The next write replaces the damaged slot, not the one still valid.
            reopened
                .commit("group", "orders", 0, 3)
                .await
                .expect("commit");
            reopened.close().await.expect("close");
            let slot_0 = std::fs::read(dir.path().join(SLOT_FILE_NAMES[0])).expect("read");
            assert_eq!(decode(&slot_0).expect("slot 0 intact").generation, 1);

            let again = open(dir.path(), 100).await;
            assert_eq!(again.generation(), 2);
            assert_eq!(again.get("group", "orders", 0), Some(3));
            again.close().await.expect("close");
        });
    }

    #[test]
    fn both_slots_corrupt_is_an_error_naming_the_file() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 100).await;
            store.commit("group", "orders", 0, 1).await.expect("commit");
            store.commit("group", "orders", 0, 2).await.expect("commit");
            store.close().await.expect("close");
            for name in SLOT_FILE_NAMES {
                flip_byte(&dir.path().join(name), 2);
            }
            prime_device(dir.path()).await;
            match ConsumerOffsetStore::open(dir.path(), 100).await {
                Err(OffsetStoreError::Corrupt { path, reason }) => {
                    assert_eq!(path, dir.path().join(SLOT_FILE_NAMES[0]));
                    assert!(reason.contains("bad magic"), "{reason}");
                    assert!(reason.contains(SLOT_FILE_NAMES[1]), "{reason}");
                }
                Err(other) => panic!("expected Corrupt, got {other}"),
                Ok(_) => panic!("expected Corrupt, got a store"),
            }
        });
    }

    #[test]
    fn one_damaged_slot_and_one_never_written_is_an_error() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 100).await;
            store.commit("group", "orders", 0, 1).await.expect("commit");
            store.close().await.expect("close");
            let slot_1 = dir.path().join(SLOT_FILE_NAMES[1]);
            assert_eq!(std::fs::metadata(&slot_1).expect("stat").len(), 0);
            flip_byte(&dir.path().join(SLOT_FILE_NAMES[0]), HEADER_BYTES);
            prime_device(dir.path()).await;
            let result = ConsumerOffsetStore::open(dir.path(), 100).await;
            assert!(
                matches!(result, Err(OffsetStoreError::Corrupt { .. })),
                "data existed: must not start empty"
            );
        });
    }

    #[test]
    fn absent_or_empty_slot_files_open_as_an_empty_store() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 100).await;
            assert_eq!(store.entries(), 0);
            assert_eq!(store.generation(), 0);
            // Closing a store without changes writes nothing.
            store.close().await.expect("close");
            assert_eq!(store.writes(), 0);
            for name in SLOT_FILE_NAMES {
                let length = std::fs::metadata(dir.path().join(name))
                    .expect("stat")
                    .len();
                assert_eq!(length, 0, "{name}");
            }
            let reopened = open(dir.path(), 100).await;
            assert_eq!(reopened.entries(), 0);
            reopened.close().await.expect("close");
        });
    }

    #[test]
    fn new_key_beyond_the_limit_is_refused_without_change() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 2).await;
            store.commit("group", "orders", 0, 1).await.expect("commit");
            store.commit("group", "orders", 1, 1).await.expect("commit");
            let refused = store.commit("group", "orders", 2, 1).await;
            assert!(
                matches!(refused, Err(OffsetStoreError::TooManyEntries { limit: 2 })),
                "{refused:?}"
            );
            assert_eq!(store.get("group", "orders", 2), None);
            assert_eq!(store.entries(), 2);
            assert_eq!(store.writes(), 2);
            // Existing keys still update, and a removed topic makes room.
            store.commit("group", "orders", 1, 9).await.expect("update");
            store.remove_topic("orders");
            store.commit("group", "orders", 2, 1).await.expect("room");
            store.close().await.expect("close");
        });
    }

    #[test]
    fn bad_names_are_refused() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 10).await;
            let long = "x".repeat(MAX_NAME_BYTES + 1);
            for (group, topic, what) in [
                ("", "orders", "consumer group"),
                (long.as_str(), "orders", "consumer group"),
                ("group", "", "topic"),
                ("group", long.as_str(), "topic"),
            ] {
                match store.commit(group, topic, 0, 1).await {
                    Err(OffsetStoreError::BadName { what: named, .. }) => {
                        assert_eq!(named, what)
                    }
                    other => panic!("expected BadName for {what}, got {other:?}"),
                }
            }
            let longest = "x".repeat(MAX_NAME_BYTES);
            store
                .commit(&longest, &longest, 0, 1)
                .await
                .expect("longest names");
            assert_eq!(store.entries(), 1);
            store.close().await.expect("close");
        });
    }

    #[test]
    fn remove_topic_persists() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 1000).await;
            for queue in 0..200 {
                store
                    .commit("group", "deleted", queue, 5)
                    .await
                    .expect("commit");
            }
            store.commit("group", "kept", 0, 6).await.expect("commit");
            store.commit("other", "kept", 1, 7).await.expect("commit");
            let writes = store.writes();
            store.remove_topic("deleted");
            store.remove_topic("never-existed");
            assert_eq!(store.entries(), 2);
            assert_eq!(store.get("group", "deleted", 0), None);
            store.close().await.expect("close");
            assert_eq!(store.writes(), writes + 1, "the removal was written");

            let reopened = open(dir.path(), 1000).await;
            assert_eq!(reopened.entries(), 2);
            assert_eq!(reopened.get("group", "deleted", 0), None);
            assert_eq!(reopened.get("group", "kept", 0), Some(6));
            assert_eq!(reopened.get("other", "kept", 1), Some(7));
            reopened.close().await.expect("close");
        });
    }

    #[test]
    fn commit_after_close_fails() {
        run(|| async {
            let dir = shard_dir();
            let store = open(dir.path(), 10).await;
            let pending = store.commit("group", "orders", 0, 1);
            // Close writes the pending commit before closing the files.
            store.close().await.expect("close");
            pending.await.expect("commit made before close");
            let refused = store.commit("group", "orders", 0, 2).await;
            assert!(
                matches!(refused, Err(OffsetStoreError::Closed)),
                "{refused:?}"
            );
            assert_eq!(store.get("group", "orders", 0), Some(1));
            let reopened = open(dir.path(), 10).await;
            assert_eq!(reopened.get("group", "orders", 0), Some(1));
            reopened.close().await.expect("close");
        });
    }
}
