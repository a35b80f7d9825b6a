//! `Checkpoint`: the small file that says how far the queue index files are complete.
//!
//! Written periodically (after the index files it describes were written and synced) and at
//! clean shutdown. Recovery scans the commit log from `index_position`, so a checkpoint
//! bounds recovery time. Written to a temporary file, synced, renamed over the old one, and
//! the directory synced: a crash leaves either the old or the new checkpoint, never a mix.
//! The file carries its own CRC; one that fails it is treated as absent (full rescan).

use std::path::Path;

use crate::config::BLOCK_BYTES;
use crate::error::{from_glommio, Result, StorageError};
use crate::ids::QueueId;

const MAGIC: u32 = 0x4b43_5053; // "SPCK"
const VERSION: u32 = 1;
/// File name inside the shard directory.
pub(crate) const FILE_NAME: &str = "checkpoint";
const TEMP_FILE_NAME: &str = "checkpoint.tmp";

/// A queue's extent at the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueueExtent {
    pub(crate) topic: String,
    pub(crate) queue: QueueId,
    pub(crate) min_offset: u64,
    pub(crate) next_offset: u64,
}

/// What a checkpoint records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// Written by a clean shutdown.
    pub(crate) clean: bool,
    /// Every record below this log position has its index entry in the index files.
    pub(crate) index_position: u64,
    pub(crate) queues: Vec<QueueExtent>,
}

impl Checkpoint {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.queues.len() * 48);
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // total length, patched below
        out.push(self.clean as u8);
        out.extend_from_slice(&self.index_position.to_le_bytes());
        out.extend_from_slice(&(self.queues.len() as u32).to_le_bytes());
        for extent in &self.queues {
            out.push(extent.topic.len() as u8);
            out.extend_from_slice(extent.topic.as_bytes());
            out.extend_from_slice(&extent.queue.0.to_le_bytes());
            out.extend_from_slice(&extent.min_offset.to_le_bytes());
            out.extend_from_slice(&extent.next_offset.to_le_bytes());
        }
        let total = out.len() as u32 + 4;
        out[8..12].copy_from_slice(&total.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a checkpoint; `None` when it is not a whole, intact one.
    fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.u32()? != MAGIC || reader.u32()? != VERSION {
            return None;
        }
        let total = reader.u32()? as usize;
        let body = bytes.get(..total.checked_sub(4)?)?;
        let crc = u32::from_le_bytes(bytes.get(total - 4..total)?.try_into().ok()?);
        if crc32fast::hash(body) != crc {
            return None;
        }
        let clean = reader.take(1)?[0] == 1;
        let index_position = reader.u64()?;
        let count = reader.u32()? as usize;
        let mut queues = Vec::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let topic_len = reader.take(1)?[0] as usize;
            let topic = String::from_utf8(reader.take(topic_len)?.to_vec()).ok()?;
            queues.push(QueueExtent {
                topic,
                queue: QueueId(reader.u32()?),
                min_offset: reader.u64()?,
                next_offset: reader.u64()?,
            });
        }
        Some(Checkpoint {
            clean,
            index_position,
            queues,
        })
    }

    /// Reads the shard's checkpoint; `None` if there is none or it is damaged.
    pub(crate) fn load(shard_dir: &Path) -> Result<Option<Checkpoint>> {
        let path = shard_dir.join(FILE_NAME);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let checkpoint = Checkpoint::decode(&bytes);
                if checkpoint.is_none() {
                    tracing::warn!(path = %path.display(), "checkpoint damaged; rescanning the whole log");
                }
                Ok(checkpoint)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StorageError::io("read checkpoint", path, error)),
        }
    }

    /// Atomically replaces the shard's checkpoint with this one.
    pub(crate) async fn store(&self, shard_dir: &Path) -> Result<()> {
        let encoded = self.encode();
        let temp = shard_dir.join(TEMP_FILE_NAME);
        let io = |operation, error: glommio::GlommioError<()>| {
            StorageError::io(operation, &temp, from_glommio(error))
        };
        let file = glommio::io::DmaFile::create(&temp)
            .await
            .map_err(|error| io("create checkpoint", error))?;
        let size = (encoded.len() as u64).div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
        let mut buffer = file.alloc_dma_buffer(size as usize);
        buffer.as_bytes_mut().fill(0);
        buffer.as_bytes_mut()[..encoded.len()].copy_from_slice(&encoded);
        file.write_at(buffer, 0)
            .await
            .map_err(|error| io("write checkpoint", error))?;
        file.fdatasync()
            .await
            .map_err(|error| io("sync checkpoint", error))?;
        file.rename(shard_dir.join(FILE_NAME))
            .await
            .map_err(|error| io("rename checkpoint", error))?;
        file.close()
            .await
            .map_err(|error| io("close checkpoint", error))?;
        crate::commit_log::sync_directory(shard_dir).await
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(len)?)?;
        self.at += len;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detected() {
        let checkpoint = Checkpoint {
            clean: true,
            index_position: 123_456,
            queues: vec![QueueExtent {
                topic: "orders".into(),
                queue: QueueId(3),
                min_offset: 5,
                next_offset: 99,
            }],
        };
        let mut bytes = checkpoint.encode();
        bytes.resize(4096, 0);
        assert_eq!(Checkpoint::decode(&bytes), Some(checkpoint));
        bytes[20] ^= 1;
        assert_eq!(Checkpoint::decode(&bytes), None);
    }
}
