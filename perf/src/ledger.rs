//! The ledger: one entry per message a broker acknowledged to `produce --ledger FILE`, so
//! that `verify --ledger FILE` can later prove that every one of them is stored, once,
//! intact and in order ([`crate::verification`]).
//!
//! Many producer threads share one [`LedgerWriter`] (a `Mutex` around a buffered file:
//! an entry is 32 bytes, so the lock is held for a copy); [`LedgerWriter::finish`] flushes
//! and fsyncs it. [`Ledger::read`] loads a whole ledger.
//!
//! # File format (version 1, little endian)
//!
//! A 16-byte file header: the magic [`LEDGER_MAGIC`] (`SPWLEDGR`), the format version
//! ([`LEDGER_VERSION`], u32) and 4 zero bytes. Then entries, each starting with a kind byte:
//!
//! * **broker** ([`KIND_BROKER`], `B`), written before the first message of each broker:
//!   `kind u8, 0u8, name_length u16, name (UTF-8), crc u32`. Brokers are numbered 0, 1, ...
//!   in the order of their entries; messages name them by that index.
//! * **message** ([`KIND_MESSAGE`], `M`), 32 bytes: `kind u8, 0u8, broker_index u16,
//!   queue_id u32, message_id u64, queue_offset u64, body_crc u32, crc u32`.
//!
//! Each entry's `crc` is CRC-32 (ISO-HDLC, `crc32fast`) of its bytes before the `crc`. A
//! file that ends inside an entry (the producer was killed mid-write) is read up to the
//! last whole entry and the torn bytes are reported ([`Ledger::torn_tail_bytes`]); any other
//! damage (bad magic, unknown kind, a CRC mismatch, an undefined broker) is an error, never
//! skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use spillway_wire::{QueueId, QueueOffset};

use crate::load_error::LoadError;
use crate::message_body::MessageId;

/// First 8 bytes of every ledger file.
pub const LEDGER_MAGIC: [u8; 8] = *b"SPWLEDGR";
/// The format version this code writes and reads.
pub const LEDGER_VERSION: u32 = 1;
/// Bytes of the file header.
pub const LEDGER_HEADER_BYTES: usize = 16;
/// Kind byte of a broker entry.
pub const KIND_BROKER: u8 = b'B';
/// Kind byte of a message entry.
pub const KIND_MESSAGE: u8 = b'M';
/// Bytes of a message entry.
pub const MESSAGE_ENTRY_BYTES: usize = 32;
/// Bytes of a broker entry around its name.
pub const BROKER_ENTRY_OVERHEAD_BYTES: usize = 8;
/// Longest broker name a ledger holds.
pub const MAX_BROKER_NAME_BYTES: usize = 1024;
/// Most brokers a ledger names (indexes are u16).
pub const MAX_LEDGER_BROKERS: usize = 1 << 16;
/// The writer's buffer.
pub const LEDGER_BUFFER_BYTES: usize = 1 << 20;

const _: () = assert!(MAX_BROKER_NAME_BYTES <= u16::MAX as usize);
const _: () = assert!(MAX_LEDGER_BROKERS <= u16::MAX as usize + 1);
const _: () = assert!(LEDGER_HEADER_BYTES == LEDGER_MAGIC.len() + 8);

/// A message the broker acknowledged, as a producer tells the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged<'a> {
    /// The message.
    pub id: MessageId,
    /// The broker (group) that stored it.
    pub broker_name: &'a str,
    /// Its queue.
    pub queue_id: QueueId,
    /// The offset the acknowledgement gave it.
    pub queue_offset: QueueOffset,
    /// [`crate::message_body::body_crc`] of the body sent.
    pub body_crc: u32,
}

/// One acknowledged message, as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The message.
    pub id: MessageId,
    /// Index of its broker in [`Ledger::brokers`].
    pub broker_index: u16,
    /// Its queue.
    pub queue_id: QueueId,
    /// The offset the acknowledgement gave it.
    pub queue_offset: QueueOffset,
    /// CRC-32 of the body sent.
    pub body_crc: u32,
}

/// A whole ledger file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    brokers: Vec<String>,
    entries: Vec<LedgerEntry>,
    torn_tail_bytes: u64,
}

impl Ledger {
    /// A ledger of these brokers and entries (for tests and tools; files come from
    /// [`Ledger::read`]). Panics if an entry names a broker not in `brokers`.
    pub fn from_parts(brokers: Vec<String>, entries: Vec<LedgerEntry>) -> Ledger {
        for entry in &entries {
            assert!(
                usize::from(entry.broker_index) < brokers.len(),
                "entry {entry:?} names broker {} of {}",
                entry.broker_index,
                brokers.len()
            );
        }
        Ledger {
            brokers,
            entries,
            torn_tail_bytes: 0,
        }
    }

    /// Reads the ledger at `path`.
    pub fn read(path: &Path) -> Result<Ledger, LoadError> {
        let file = File::open(path).map_err(|source| LoadError::io("opening", path, source))?;
        let length = file
            .metadata()
            .map_err(|source| LoadError::io("reading metadata of", path, source))?
            .len();
        let mut reader = LedgerReader {
            input: BufReader::with_capacity(LEDGER_BUFFER_BYTES, file),
            path,
            position: 0,
        };
        let mut header = [0u8; LEDGER_HEADER_BYTES];
        if reader.read_up_to(&mut header)? < LEDGER_HEADER_BYTES {
            return Err(reader.format_error(0, "shorter than the ledger header"));
        }
        if header[..8] != LEDGER_MAGIC {
            return Err(reader.format_error(0, "not a ledger file (bad magic)"));
        }
        let version = u32::from_le_bytes(array(&header[8..12]));
        if version != LEDGER_VERSION {
            return Err(reader.format_error(
                8,
                &format!("format version {version}; this build reads {LEDGER_VERSION}"),
            ));
        }

        let mut ledger = Ledger::default();
        let mut entry = [0u8; MESSAGE_ENTRY_BYTES];
        loop {
            let start = reader.position;
            let torn = |ledger: &mut Ledger| ledger.torn_tail_bytes = length - start;
            match reader.read_up_to(&mut entry[..4])? {
                0 => break,
                4 => {}
                _ => {
                    torn(&mut ledger);
                    break;
                }
            }
            match entry[0] {
                KIND_MESSAGE => {
                    if reader.read_up_to(&mut entry[4..])? < MESSAGE_ENTRY_BYTES - 4 {
                        torn(&mut ledger);
                        break;
                    }
                    check_crc(&reader, start, &entry)?;
                    let broker_index = u16::from_le_bytes(array(&entry[2..4]));
                    if usize::from(broker_index) >= ledger.brokers.len() {
                        return Err(reader.format_error(
                            start,
                            &format!("message entry names broker {broker_index}, not defined"),
                        ));
                    }
                    ledger.entries.push(LedgerEntry {
                        broker_index,
                        queue_id: QueueId(u32::from_le_bytes(array(&entry[4..8]))),
                        id: MessageId(u64::from_le_bytes(array(&entry[8..16]))),
                        queue_offset: QueueOffset(u64::from_le_bytes(array(&entry[16..24]))),
                        body_crc: u32::from_le_bytes(array(&entry[24..28])),
                    });
                }
                KIND_BROKER => {
                    let name_length = usize::from(u16::from_le_bytes(array(&entry[2..4])));
                    if name_length == 0 || name_length > MAX_BROKER_NAME_BYTES {
                        return Err(reader.format_error(
                            start,
                            &format!(
                                "broker name of {name_length} bytes (1 to \
                                 {MAX_BROKER_NAME_BYTES})"
                            ),
                        ));
                    }
                    let mut rest = vec![0u8; name_length + 4];
                    if reader.read_up_to(&mut rest)? < rest.len() {
                        torn(&mut ledger);
                        break;
                    }
                    let mut whole = entry[..4].to_vec();
                    whole.extend_from_slice(&rest);
                    check_crc(&reader, start, &whole)?;
                    if ledger.brokers.len() == MAX_LEDGER_BROKERS {
                        return Err(reader.format_error(
                            start,
                            &format!("more than {MAX_LEDGER_BROKERS} brokers"),
                        ));
                    }
                    let name = String::from_utf8(rest[..name_length].to_vec())
                        .map_err(|_| reader.format_error(start, "broker name is not UTF-8"))?;
                    if ledger.brokers.contains(&name) {
                        return Err(reader
                            .format_error(start, &format!("broker {name:?} is defined twice")));
                    }
                    ledger.brokers.push(name);
                }
                kind => {
                    return Err(
                        reader.format_error(start, &format!("unknown entry kind {kind:#04x}"))
                    )
                }
            }
        }
        Ok(ledger)
    }

    /// The broker names, by index.
    pub fn brokers(&self) -> &[String] {
        &self.brokers
    }

    /// The name of broker `index`.
    pub fn broker_name(&self, index: u16) -> Option<&str> {
        self.brokers.get(usize::from(index)).map(String::as_str)
    }

    /// Every acknowledged message, in the order they were written.
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// Bytes at the end of the file that did not make a whole entry (the writer was
    /// interrupted); 0 for a ledger finished cleanly.
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail_bytes
    }
}

/// Writes a ledger; shared by every producer thread (`&LedgerWriter` or `Arc`).
#[derive(Debug)]
pub struct LedgerWriter {
    path: PathBuf,
    state: Mutex<WriterState>,
}

#[derive(Debug)]
struct WriterState {
    output: BufWriter<File>,
    brokers: HashMap<String, u16>,
    entries: u64,
}

impl LedgerWriter {
    /// Creates (or truncates) the ledger file at `path` and writes its header.
    pub fn create(path: &Path) -> Result<LedgerWriter, LoadError> {
        let file = File::create(path).map_err(|source| LoadError::io("creating", path, source))?;
        let mut output = BufWriter::with_capacity(LEDGER_BUFFER_BYTES, file);
        let mut header = [0u8; LEDGER_HEADER_BYTES];
        header[..8].copy_from_slice(&LEDGER_MAGIC);
        header[8..12].copy_from_slice(&LEDGER_VERSION.to_le_bytes());
        output
            .write_all(&header)
            .map_err(|source| LoadError::io("writing the header of", path, source))?;
        Ok(LedgerWriter {
            path: path.to_owned(),
            state: Mutex::new(WriterState {
                output,
                brokers: HashMap::new(),
                entries: 0,
            }),
        })
    }

    /// Appends one acknowledged message.
    pub fn record(&self, acknowledged: &Acknowledged<'_>) -> Result<(), LoadError> {
        self.record_all(std::slice::from_ref(acknowledged))
    }

    /// Appends several acknowledged messages (a batch) under one lock. After an error the
    /// file may end in a partial entry: stop recording (a later read reports it as a torn
    /// tail, or as damage if more entries follow).
    pub fn record_all(&self, acknowledged: &[Acknowledged<'_>]) -> Result<(), LoadError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let WriterState {
            output,
            brokers,
            entries,
        } = &mut *state;
        let write_error = |source| LoadError::io("writing to", &self.path, source);
        for message in acknowledged {
            let broker_index = match brokers.get(message.broker_name) {
                Some(&index) => index,
                None => {
                    let name = message.broker_name.as_bytes();
                    if name.is_empty() || name.len() > MAX_BROKER_NAME_BYTES {
                        return Err(LoadError::LedgerContents {
                            reason: format!(
                                "broker name {:?} is not 1 to {MAX_BROKER_NAME_BYTES} bytes",
                                message.broker_name
                            ),
                        });
                    }
                    let index =
                        u16::try_from(brokers.len()).map_err(|_| LoadError::LedgerContents {
                            reason: format!("more than {MAX_LEDGER_BROKERS} brokers"),
                        })?;
                    let mut entry = Vec::with_capacity(name.len() + BROKER_ENTRY_OVERHEAD_BYTES);
                    entry.extend_from_slice(&[KIND_BROKER, 0]);
                    // Checked above: the length fits a u16.
                    entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
                    entry.extend_from_slice(name);
                    let crc = crc32fast::hash(&entry);
                    entry.extend_from_slice(&crc.to_le_bytes());
                    output.write_all(&entry).map_err(write_error)?;
                    brokers.insert(message.broker_name.to_owned(), index);
                    index
                }
            };
            let mut entry = [0u8; MESSAGE_ENTRY_BYTES];
            entry[0] = KIND_MESSAGE;
            entry[2..4].copy_from_slice(&broker_index.to_le_bytes());
            entry[4..8].copy_from_slice(&message.queue_id.0.to_le_bytes());
            entry[8..16].copy_from_slice(&message.id.0.to_le_bytes());
            entry[16..24].copy_from_slice(&message.queue_offset.0.to_le_bytes());
            entry[24..28].copy_from_slice(&message.body_crc.to_le_bytes());
            let crc = crc32fast::hash(&entry[..28]);
            entry[28..32].copy_from_slice(&crc.to_le_bytes());
            output.write_all(&entry).map_err(write_error)?;
            *entries += 1;
        }
        Ok(())
    }

    /// Messages recorded so far.
    pub fn entries(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
    }

    /// Flushes the buffer and fsyncs the file; returns the number of messages recorded.
    pub fn finish(self) -> Result<u64, LoadError> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let file = state
            .output
            .into_inner()
            .map_err(|error| LoadError::io("flushing", &self.path, error.into_error()))?;
        file.sync_all()
            .map_err(|source| LoadError::io("syncing", &self.path, source))?;
        Ok(state.entries)
    }
}

/// Sequential reading with the position kept, for error messages.
struct LedgerReader<'a> {
    input: BufReader<File>,
    path: &'a Path,
    position: u64,
}

impl LedgerReader<'_> {
    /// Fills `buffer` unless the file ends first; returns the bytes read.
    fn read_up_to(&mut self, buffer: &mut [u8]) -> Result<usize, LoadError> {
        let mut filled = 0;
        while filled < buffer.len() {
            match self.input.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(source) => return Err(LoadError::io("reading", self.path, source)),
            }
        }
        self.position += filled as u64;
        Ok(filled)
    }

    fn format_error(&self, position: u64, reason: &str) -> LoadError {
        LoadError::LedgerFormat {
            path: self.path.to_owned(),
            position,
            reason: reason.to_owned(),
        }
    }
}

/// Checks the CRC in the last 4 bytes of `entry` against the bytes before it.
fn check_crc(reader: &LedgerReader<'_>, start: u64, entry: &[u8]) -> Result<(), LoadError> {
    let (body, stored) = entry.split_at(entry.len() - 4);
    let stored = u32::from_le_bytes(array(stored));
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(reader.format_error(
            start,
            &format!("entry CRC {stored:#010x} does not match its bytes ({computed:#010x})"),
        ));
    }
    Ok(())
}

/// The first `N` bytes of `bytes` as an array (callers pass slices of exactly `N`).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acknowledged(broker_name: &str, queue: u32, offset: u64, id: MessageId) -> Acknowledged<'_> {
        Acknowledged {
            id,
            broker_name,
            queue_id: QueueId(queue),
            queue_offset: QueueOffset(offset),
            body_crc: (id.0 as u32) ^ 0xABCD_0123,
        }
    }

    fn write_sample(path: &Path) -> u64 {
        let writer = LedgerWriter::create(path).unwrap();
        writer
            .record(&acknowledged("broker-a", 0, 0, MessageId::new(0, 0)))
            .unwrap();
        writer
            .record_all(&[
                acknowledged("broker-b", 3, 7, MessageId::new(1, 0)),
                acknowledged("broker-a", 0, 1, MessageId::new(0, 1)),
                acknowledged("broker-b", 3, 8, MessageId::new(1, 1)),
            ])
            .unwrap();
        assert_eq!(writer.entries(), 4);
        writer.finish().unwrap()
    }

    #[test]
    fn ledger_round_trips_through_a_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger");
        assert_eq!(write_sample(&path), 4);
        let ledger = Ledger::read(&path).unwrap();
        assert_eq!(ledger.brokers(), ["broker-a", "broker-b"]);
        assert_eq!(ledger.torn_tail_bytes(), 0);
        let entries = ledger.entries();
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[1],
            LedgerEntry {
                id: MessageId::new(1, 0),
                broker_index: 1,
                queue_id: QueueId(3),
                queue_offset: QueueOffset(7),
                body_crc: (MessageId::new(1, 0).0 as u32) ^ 0xABCD_0123,
            }
        );
        assert_eq!(
            ledger.broker_name(entries[2].broker_index),
            Some("broker-a")
        );
        assert_eq!(entries[3].queue_offset, QueueOffset(8));
        // Header, two broker entries (8 bytes + name each), four messages.
        let length = std::fs::metadata(&path).unwrap().len();
        assert_eq!(length, 16 + 2 * (8 + 8) + 4 * 32);
    }

    #[test]
    fn many_threads_share_one_writer() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger");
        let writer = LedgerWriter::create(&path).unwrap();
        std::thread::scope(|scope| {
            for producer in 0..8u32 {
                let writer = &writer;
                scope.spawn(move || {
                    for sequence in 0..1_000u64 {
                        let name = format!("broker-{}", producer % 3);
                        let id = MessageId::new(producer, sequence);
                        writer
                            .record(&acknowledged(&name, producer, sequence, id))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(writer.finish().unwrap(), 8_000);
        let ledger = Ledger::read(&path).unwrap();
        assert_eq!(ledger.entries().len(), 8_000);
        assert_eq!(ledger.brokers().len(), 3);
        for entry in ledger.entries() {
            let name = ledger.broker_name(entry.broker_index).unwrap();
            assert_eq!(name, format!("broker-{}", entry.id.producer() % 3));
            assert_eq!(entry.queue_offset.0, entry.id.sequence());
        }
    }

    #[test]
    fn a_torn_tail_is_reported_and_the_whole_entries_kept() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger");
        write_sample(&path);
        let bytes = std::fs::read(&path).unwrap();
        for cut in 1..32 {
            std::fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
            let ledger = Ledger::read(&path).unwrap();
            assert_eq!(ledger.entries().len(), 3, "cut {cut}");
            assert_eq!(ledger.torn_tail_bytes(), 32 - cut as u64, "cut {cut}");
        }
    }

    #[test]
    fn damage_is_an_error_naming_its_position() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger");
        write_sample(&path);
        let bytes = std::fs::read(&path).unwrap();
        let message_start = 16 + 16; // header and broker-a's entry
        let damaged = |position: usize, expected: &str| {
            let mut copy = bytes.clone();
            copy[position] ^= 0x20;
            std::fs::write(&path, &copy).unwrap();
            let error = Ledger::read(&path).unwrap_err().to_string();
            assert!(error.contains(expected), "flip at {position}: {error}");
        };
        damaged(0, "bad magic");
        damaged(8, "format version");
        damaged(
            message_start + 20,
            &format!("byte {message_start}: entry CRC"),
        );
        damaged(message_start, "unknown entry kind");
        damaged(16 + 5, "byte 16: entry CRC"); // inside broker-a's name
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert!(Ledger::read(&path)
            .unwrap_err()
            .to_string()
            .contains("shorter than the ledger header"));
    }

    #[test]
    fn a_message_before_its_broker_is_refused() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger");
        let mut bytes = LEDGER_MAGIC.to_vec();
        bytes.extend_from_slice(&LEDGER_VERSION.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let mut entry = [0u8; 32];
        entry[0] = KIND_MESSAGE;
        let crc = crc32fast::hash(&entry[..28]);
        entry[28..].copy_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&entry);
        std::fs::write(&path, &bytes).unwrap();
        let error = Ledger::read(&path).unwrap_err().to_string();
        assert!(error.contains("names broker 0, not defined"), "{error}");
    }
}
