//! Deleting a topic's queues from a shard, durably, without rewriting the log.
//!
//! The log keeps the topic's records until retention deletes their segments; what must go
//! is every way to reach them. [`ShardStore::delete_topic`], in one step with no await in
//! between:
//!
//! 1. places a *tombstone* in the log ([`record::STAMP_FLAG_TOPIC_DELETED`]: a record with
//!    the topic's name and no body, in no queue);
//! 2. takes the topic's queues out of the store, so an append placed after the tombstone
//!    starts a new queue at offset 0;
//! 3. renames their index files to `<queue>.idx.deleted`, so the new queue's index file
//!    starts empty;
//!
//! then waits until the tombstone is durable (per the flush mode) and removes the renamed
//! files. Recovery meets the tombstone whenever its scan covers it and forgets the topic's
//! queues there ([`forget_topic`]); when the scan starts after it, the checkpoint it starts
//! from no longer lists them. A crash between the rename and the checkpoint that follows
//! leaves a checkpoint naming an index file that is gone, which makes recovery rebuild
//! every index from the whole log, tombstone included. Leftover `.deleted` files are swept
//! at open ([`sweep_deleted_indexes`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::error::{Result, StorageError};
use crate::ids::QueueId;
use crate::record::{self, RecordBuilder, Stamp, STAMP_FLAG_TOPIC_DELETED};
use crate::store::{validate_topic, QueueHandle, ShardStore};

/// Suffix of an index file whose queue was deleted and whose tombstone is not yet durable.
const DELETED_SUFFIX: &str = ".deleted";

impl ShardStore {
    /// Deletes `topic`'s queues on this shard (see the module docs); returns how many there
    /// were. With none, nothing is written and 0 is returned.
    pub async fn delete_topic(&self, topic: &str) -> Result<usize> {
        validate_topic(topic)?;
        self.inner.log.check_open()?;
        let mut tombstone = Vec::new();
        RecordBuilder::new(&[])
            .topic(topic)
            .encode(&mut tombstone)
            // A valid topic name always fits a record.
            .map_err(|_| StorageError::BadTopic {
                topic: topic.into(),
                reason: "does not fit a record",
            })?;

        // From here to the tombstone's placement nothing awaits: every append is placed
        // either before it (in the old queues) or after it (in new ones).
        let Some(removed) = self.inner.queues.borrow_mut().remove(topic) else {
            return Ok(0);
        };
        let store_timestamp_ms = self.next_store_timestamp_ms();
        let position = self.inner.log.place(&tombstone, |position, bytes| {
            record::stamp_with_flags(
                bytes,
                Stamp {
                    queue_id: 0,
                    queue_offset: 0,
                    log_position: position,
                    store_timestamp_ms,
                },
                STAMP_FLAG_TOPIC_DELETED,
            );
        });
        let count = removed.len();
        self.inner
            .queue_count
            .set(self.inner.queue_count.get() - count);
        let renamed = rename_index_files(removed.into_values())?;

        self.inner
            .log
            .wait_durable(position + tombstone.len() as u64)
            .await?;
        for path in renamed {
            remove_if_present(&path)?;
        }
        tracing::info!(
            shard = self.inner.config.shard_id.0,
            topic,
            queues = count,
            position,
            "topic deleted"
        );
        Ok(count)
    }
}

/// Recovery met a tombstone of `topic`: forgets the queues it has rebuilt for it so far and
/// removes their index files (a queue of the topic seen after the tombstone starts anew).
pub(crate) fn forget_topic(
    queues: &mut HashMap<Rc<str>, HashMap<QueueId, QueueHandle>>,
    queue_count: &mut usize,
    topic: &str,
) -> Result<()> {
    if let Some(removed) = queues.remove(topic) {
        *queue_count -= removed.len();
        for handle in removed.into_values() {
            remove_if_present(handle.borrow().path())?;
        }
    }
    Ok(())
}

/// Removes index files left renamed by a deletion that a crash interrupted.
pub(crate) fn sweep_deleted_indexes(index_dir: &Path) -> Result<()> {
    let topics = std::fs::read_dir(index_dir)
        .map_err(|error| StorageError::io("list index directory", index_dir, error))?;
    for topic in topics {
        let topic =
            topic.map_err(|error| StorageError::io("list index directory", index_dir, error))?;
        if !topic.path().is_dir() {
            continue;
        }
        let dir = topic.path();
        let files = std::fs::read_dir(&dir)
            .map_err(|error| StorageError::io("list index directory", &dir, error))?;
        for file in files {
            let file =
                file.map_err(|error| StorageError::io("list index directory", &dir, error))?;
            if file.file_name().to_string_lossy().ends_with(DELETED_SUFFIX) {
                remove_if_present(&file.path())?;
            }
        }
    }
    Ok(())
}

fn rename_index_files(handles: impl Iterator<Item = QueueHandle>) -> Result<Vec<PathBuf>> {
    let mut renamed = Vec::new();
    for handle in handles {
        let index = handle.borrow();
        let path = index.path();
        let mut deleted = path.as_os_str().to_owned();
        deleted.push(DELETED_SUFFIX);
        let deleted = PathBuf::from(deleted);
        match std::fs::rename(path, &deleted) {
            Ok(()) => renamed.push(deleted),
            // Never flushed: nothing to hide.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StorageError::io("rename deleted index", path, error)),
        }
    }
    Ok(renamed)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StorageError::io("remove deleted index", path, error)),
    }
}
