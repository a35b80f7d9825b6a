//! [`LocalOffsets`]: where a broadcasting push consumer has got to in each queue, kept by
//! the consumer itself (in broadcasting every member reads every message, so the group's
//! offsets on the brokers would mean nothing), in memory and optionally in a file.
//!
//! The file is rewritten whole on every commit: written to `PATH.tmp`, synced, then
//! renamed over `PATH`, so a crash leaves the old file or the new one, never a mix. It is
//! text, one queue a line after a version line:
//!
//! ```text
//! spillway-local-offsets 1
//! orders broker-a 0 1042
//! orders broker-a 1 998
//! ```
//!
//! Topic and broker names never contain white space (the brokers refuse such names), so
//! the fields are separated by one space. A file that does not parse is refused when the
//! consumer starts rather than silently ignored (starting over would redeliver or skip).
//! The store never talks to a broker.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::error::{ClientError, Result};
use crate::message::MessageQueue;

/// The first line of an offsets file.
const HEADER: &str = "spillway-local-offsets 1";

/// Offsets per queue, in memory and optionally in a file (see the module docs).
#[derive(Debug)]
pub(crate) struct LocalOffsets {
    path: Option<PathBuf>,
    offsets: Mutex<BTreeMap<MessageQueue, u64>>,
}

impl LocalOffsets {
    /// Offsets kept at `path` (read now if the file exists), or in memory only.
    pub(crate) fn open(path: Option<PathBuf>) -> Result<LocalOffsets> {
        let offsets = match &path {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => parse(path, &text)?,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(error) => return Err(io_error(path, error)),
            },
            None => BTreeMap::new(),
        };
        Ok(LocalOffsets {
            path,
            offsets: Mutex::new(offsets),
        })
    }

    /// The offset stored for `queue`, if any.
    pub(crate) fn get(&self, queue: &MessageQueue) -> Option<u64> {
        self.offsets().get(queue).copied()
    }

    /// Stores `offset` for `queue` in memory (see [`LocalOffsets::persist`]).
    pub(crate) fn set(&self, queue: &MessageQueue, offset: u64) {
        self.offsets().insert(queue.clone(), offset);
    }

    /// Writes every offset to the file, if there is one.
    pub(crate) fn persist(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut text = String::from(HEADER);
        text.push('\n');
        for (queue, offset) in self.offsets().iter() {
            let names = [queue.topic.as_str(), queue.broker_name.as_str()];
            if names
                .iter()
                .any(|name| name.is_empty() || name.contains(char::is_whitespace))
            {
                return Err(ClientError::InvalidConfig {
                    reason: format!("cannot store an offset for queue {queue:?} in a file"),
                });
            }
            text.push_str(&format!(
                "{} {} {} {offset}\n",
                queue.topic, queue.broker_name, queue.queue_id
            ));
        }
        let mut temporary = path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let written = std::fs::File::create(&temporary).and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
        written.map_err(|error| io_error(&temporary, error))?;
        std::fs::rename(&temporary, path).map_err(|error| io_error(path, error))
    }

    fn offsets(&self) -> std::sync::MutexGuard<'_, BTreeMap<MessageQueue, u64>> {
        self.offsets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn parse(path: &Path, text: &str) -> Result<BTreeMap<MessageQueue, u64>> {
    let refuse = |line: usize, why: &str| ClientError::InvalidConfig {
        reason: format!("offsets file {} line {line}: {why}", path.display()),
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(refuse(1, &format!("expected {HEADER:?}")));
    }
    let mut offsets = BTreeMap::new();
    for (index, line) in lines.enumerate() {
        let number = index + 2;
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        let [topic, broker_name, queue_id, offset] = fields[..] else {
            return Err(refuse(number, "expected TOPIC BROKER_NAME QUEUE_ID OFFSET"));
        };
        let queue_id: u32 = queue_id
            .parse()
            .map_err(|_| refuse(number, "the queue id is not a number"))?;
        let offset: u64 = offset
            .parse()
            .map_err(|_| refuse(number, "the offset is not a number"))?;
        offsets.insert(MessageQueue::new(topic, broker_name, queue_id), offset);
    }
    Ok(offsets)
}

fn io_error(path: &Path, error: std::io::Error) -> ClientError {
    ClientError::io(&path.display().to_string(), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_survive_a_reopen_and_memory_only_needs_no_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("offsets");
        let store = LocalOffsets::open(Some(path.clone())).unwrap();
        let first = MessageQueue::new("orders", "broker-a", 0);
        let second = MessageQueue::new("orders", "broker-b", 7);
        assert_eq!(store.get(&first), None);
        store.set(&first, 42);
        store.set(&second, u64::MAX);
        store.set(&first, 43);
        store.persist().unwrap();
        let reopened = LocalOffsets::open(Some(path.clone())).unwrap();
        assert_eq!(reopened.get(&first), Some(43));
        assert_eq!(reopened.get(&second), Some(u64::MAX));
        assert!(!directory.path().join("offsets.tmp").exists());

        let memory = LocalOffsets::open(None).unwrap();
        memory.set(&first, 1);
        memory.persist().unwrap();
        assert_eq!(memory.get(&first), Some(1));
    }

    #[test]
    fn a_damaged_file_is_refused_naming_the_line() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("offsets");
        for (text, line) in [
            ("something else\n", "line 1"),
            ("spillway-local-offsets 1\norders broker-a 0\n", "line 2"),
            (
                "spillway-local-offsets 1\n\norders broker-a x 5\n",
                "line 3",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = LocalOffsets::open(Some(path.clone())).unwrap_err();
            assert!(error.to_string().contains(line), "{text:?}: {error}");
        }
    }
}
