//! [`TopicTable`]: the topics a broker serves, with each one's queue count and shard layout,
//! and `topics.json`, where topics created at run time are kept.
//!
//! # One copy per shard, one writer
//!
//! Every shard keeps its own [`TopicTable`]: lookups on the data path (which shard owns a
//! queue, does the topic exist) never leave the shard's thread. A change is decided and
//! persisted by shard 0 alone, which then sends the same [`TopicChange`] to the other
//! shards; they [`TopicTable::apply`] it without I/O. So the module is split in two:
//!
//! * **pure logic**, identical on every shard: the checks ([`TopicTable::check_create`],
//!   [`TopicTable::check_delete`], [`TopicTable::auto_create_entry`]) that turn a request
//!   into a change or a refusal, [`TopicTable::apply`], and the lookups;
//! * **persistence**, used by shard 0 and at start: [`TopicTable::load`] and
//!   [`TopicTable::save`].
//!
//! # Config topics and stored topics
//!
//! Topics of the config file's `[[topics]]` are always present and are not stored: the
//! config file is their source (`from_config`), and deleting one is refused
//! ([`TopicTableError::FromConfig`]). `<storage.data_dir>/topics.json` holds only topics
//! created at run time (`CreateTopic` or auto-creation). When a stored topic has the name of
//! a config topic (it was created at run time and later added to the config), the config
//! wins and the stored one is ignored with a warning.
//!
//! # Deleting a topic's messages
//!
//! The table changes first (no shard serves the topic from then on), then every shard
//! deletes the topic's queues from its store (`ShardStore::delete_topic`: a tombstone in
//! the log, so a topic created again under the name starts empty at offset 0). At start, a
//! shard deletes the queues of every topic its store has and the table lacks: a deletion
//! the broker stopped in the middle of, or a topic removed from the config file.
//!
//! # Why plain `std::fs`
//!
//! Topic changes are rare administrative operations, so `save` uses blocking `std::fs`
//! calls on the executor thread: write a temporary file, `sync_all` it, rename it over
//! `topics.json`, sync the directory. A crash leaves the old or the new file, never a mix.
//! It never runs on the data path.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spillway_storage::record::MAX_TOPIC_BYTES;
use spillway_storage::StorageError;
use spillway_wire::message::{ShardLayout, TopicConfig};
use spillway_wire::{ErrorCode, QueueId, ShardId};

use crate::config::{BrokerConfig, MAX_QUEUES_PER_TOPIC, MAX_TOPICS};

/// The stored topics' file, in `storage.data_dir`.
pub const TOPICS_FILE_NAME: &str = "topics.json";
/// The temporary file `save` writes before renaming it over [`TOPICS_FILE_NAME`].
const TEMP_FILE_NAME: &str = "topics.json.tmp";
/// The format version `save` writes and `load` reads.
const FORMAT_VERSION: u32 = 1;
/// Largest `topics.json` read: generous for [`MAX_TOPICS`] topics with [`MAX_QUEUES_PER_TOPIC`]
/// pinned queues each.
const MAX_TOPICS_FILE_BYTES: u64 = 512 << 20;

// A stored topic at its limits: a name, numbers and punctuation, and one pin per queue of up
// to five digits, a comma and the pretty printer's newline and indentation.
const _: () = assert!(
    MAX_TOPICS_FILE_BYTES
        >= (MAX_TOPICS * (MAX_TOPIC_BYTES + 128 + MAX_QUEUES_PER_TOPIC as usize * 16)) as u64
);

/// Why a topic operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum TopicTableError {
    /// Create: a topic of this name exists.
    #[error("topic {topic:?} already exists")]
    Exists {
        /// the name
        topic: String,
    },
    /// Delete: no topic of this name.
    #[error("topic {topic:?} does not exist")]
    NotFound {
        /// the name
        topic: String,
    },
    /// Create: a name, queue count or layout that is not allowed.
    #[error("invalid topic {topic:?}: {reason}")]
    Invalid {
        /// the name (cut short if very long)
        topic: String,
        /// what is wrong and what is allowed
        reason: String,
    },
    /// Delete: the topic is defined in the config file.
    #[error(
        "topic {topic:?} is defined in the broker's config file: remove it from [[topics]] \
         there (and restart the broker) to delete it"
    )]
    FromConfig {
        /// the name
        topic: String,
    },
    /// Create: the broker holds its limit of topics.
    #[error("the broker already holds its limit of {limit} topics (MAX_TOPICS)")]
    TooManyTopics {
        /// [`MAX_TOPICS`]
        limit: usize,
    },
    /// Reading or writing the topics file failed.
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
    /// The topics file cannot be used.
    #[error("the topics file {path} cannot be used: {reason}")]
    Corrupt {
        /// the file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
}

impl TopicTableError {
    /// The code a response carries for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            TopicTableError::Exists { .. } => ErrorCode::TopicExists,
            TopicTableError::NotFound { .. } => ErrorCode::TopicNotFound,
            TopicTableError::Invalid { .. }
            | TopicTableError::FromConfig { .. }
            | TopicTableError::TooManyTopics { .. } => ErrorCode::InvalidArgument,
            TopicTableError::Io { .. } | TopicTableError::Corrupt { .. } => ErrorCode::Internal,
        }
    }
}

/// One topic as the broker serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicEntry {
    /// Topic name.
    pub name: String,
    /// Number of queues, `0 .. queue_count`.
    pub queue_count: u32,
    /// Which shard owns each queue.
    pub layout: ShardLayout,
    /// Defined in the config file's `[[topics]]` (not stored, cannot be deleted).
    pub from_config: bool,
}

impl TopicEntry {
    /// The topic as registered with the name servers and listed to clients.
    pub fn wire_config(&self) -> TopicConfig {
        TopicConfig {
            topic: self.name.clone(),
            queue_count: self.queue_count,
            shard_layout: self.layout.clone(),
        }
    }
}

/// A change shard 0 decided and persisted, sent to every other shard to apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicChange {
    /// A topic was created.
    Created(TopicEntry),
    /// The topic of this name was deleted.
    Deleted(String),
}

/// The topics of a broker, by name. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicTable {
    topics: BTreeMap<String, TopicEntry>,
    version: u64,
}

/// `topics.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTopics {
    format_version: u32,
    topics: Vec<StoredTopic>,
}

/// One topic in `topics.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTopic {
    name: String,
    queue_count: u32,
    /// Each queue's shard, or `null` for round-robin.
    pins: Option<Vec<u16>>,
}

impl TopicTable {
    /// The topics of the config file's `[[topics]]`, at version 1.
    pub fn from_config(config: &BrokerConfig) -> TopicTable {
        let topics = config
            .topics
            .iter()
            .map(|settings| {
                let entry = TopicEntry {
                    name: settings.name.clone(),
                    queue_count: settings.queues,
                    layout: config.shard_layout(settings),
                    from_config: true,
                };
                (entry.name.clone(), entry)
            })
            .collect();
        TopicTable { topics, version: 1 }
    }

    /// The config's topics plus those stored in `<storage.data_dir>/topics.json` (none if
    /// the file does not exist). A stored topic named like a config topic is skipped with a
    /// warning. A file that cannot be parsed, or holds a topic this broker cannot serve
    /// (e.g. pinned to a shard it no longer has), is [`TopicTableError::Corrupt`].
    pub fn load(config: &BrokerConfig) -> Result<TopicTable, TopicTableError> {
        let mut table = TopicTable::from_config(config);
        let path = data_dir(config)?.join(TOPICS_FILE_NAME);
        let Some(stored) = read_stored(&path)? else {
            return Ok(table);
        };
        let corrupt = |reason: String| TopicTableError::Corrupt {
            path: path.clone(),
            reason,
        };
        if stored.format_version != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format version {} is not {FORMAT_VERSION}, the one this broker reads",
                stored.format_version
            )));
        }
        if stored.topics.len() > MAX_TOPICS {
            return Err(corrupt(format!(
                "{} topics, above the limit of {MAX_TOPICS} (MAX_TOPICS)",
                stored.topics.len()
            )));
        }
        let shard_count = config.shard_count();
        let mut seen = BTreeMap::new();
        for (index, topic) in stored.topics.into_iter().enumerate() {
            if let Some(first) = seen.insert(topic.name.clone(), index) {
                return Err(corrupt(format!(
                    "topic {:?} is stored twice (topics {first} and {index})",
                    topic.name
                )));
            }
            let layout = match topic.pins {
                None => ShardLayout::RoundRobin,
                Some(pins) => ShardLayout::Pinned(pins.into_iter().map(ShardId).collect()),
            };
            if let Err(error) = check_entry(&topic.name, topic.queue_count, &layout, shard_count) {
                return Err(corrupt(format!("topic {index}: {error}")));
            }
            if table.topics.contains_key(&topic.name) {
                tracing::warn!(
                    topic = %topic.name,
                    path = %path.display(),
                    "a stored topic is also defined in the config file; the config wins"
                );
                continue;
            }
            table.topics.insert(
                topic.name.clone(),
                TopicEntry {
                    name: topic.name,
                    queue_count: topic.queue_count,
                    layout,
                    from_config: false,
                },
            );
        }
        Ok(table)
    }

    /// Writes the topics not from the config to `<storage.data_dir>/topics.json`, replacing
    /// it atomically (temp file, `sync_all`, rename, directory sync; see the module docs).
    /// Creates the data directory if needed.
    pub fn save(&self, config: &BrokerConfig) -> Result<(), TopicTableError> {
        let dir = data_dir(config)?;
        let io = |operation, path: &Path| {
            let path = path.to_owned();
            move |source| TopicTableError::Io {
                operation,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io("create data directory", &dir))?;
        let stored = StoredTopics {
            format_version: FORMAT_VERSION,
            topics: self
                .topics
                .values()
                .filter(|entry| !entry.from_config)
                .map(|entry| StoredTopic {
                    name: entry.name.clone(),
                    queue_count: entry.queue_count,
                    pins: match &entry.layout {
                        ShardLayout::RoundRobin => None,
                        ShardLayout::Pinned(shards) => {
                            Some(shards.iter().map(|shard| shard.0).collect())
                        }
                    },
                })
                .collect(),
        };
        let path = dir.join(TOPICS_FILE_NAME);
        let temp = dir.join(TEMP_FILE_NAME);
        let mut json = serde_json::to_vec_pretty(&stored)
            .map_err(|error| io("encode topics", &temp)(error.into()))?;
        json.push(b'\n');
        let mut file = std::fs::File::create(&temp).map_err(io("create", &temp))?;
        file.write_all(&json).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("sync", &temp))?;
        drop(file);
        std::fs::rename(&temp, &path).map_err(io("rename to topics.json", &temp))?;
        std::fs::File::open(&dir)
            .and_then(|directory| directory.sync_all())
            .map_err(io("sync directory", &dir))
    }

    /// Applies `change` in memory and persists the table with it; if persisting fails the
    /// table is unchanged. Shard 0 calls this, then sends `change` to the other shards.
    pub fn apply_and_save(
        &mut self,
        change: &TopicChange,
        config: &BrokerConfig,
    ) -> Result<(), TopicTableError> {
        let mut next = self.clone();
        next.apply(change);
        next.save(config)?;
        *self = next;
        Ok(())
    }

    /// Checks a create request on a broker of `shard_count` shards and returns the topic to
    /// create: a valid name (`spillway_storage::validate_topic`), 1 to
    /// [`MAX_QUEUES_PER_TOPIC`] queues, a pinned layout naming exactly one existing shard
    /// per queue, a name not taken, and fewer than [`MAX_TOPICS`] topics.
    pub fn check_create(
        &self,
        topic: &TopicConfig,
        shard_count: u16,
    ) -> Result<TopicEntry, TopicTableError> {
        check_entry(
            &topic.topic,
            topic.queue_count,
            &topic.shard_layout,
            shard_count,
        )?;
        self.check_room(&topic.topic)?;
        Ok(TopicEntry {
            name: topic.topic.clone(),
            queue_count: topic.queue_count,
            layout: topic.shard_layout.clone(),
            from_config: false,
        })
    }

    /// The topic to auto-create for a produce to the unknown topic `name`: round-robin over
    /// the shards, with the same checks as [`TopicTable::check_create`].
    pub fn auto_create_entry(
        &self,
        name: &str,
        queue_count: u32,
    ) -> Result<TopicEntry, TopicTableError> {
        let layout = ShardLayout::RoundRobin;
        // A round-robin layout names no shard, so the shard count does not matter.
        check_entry(name, queue_count, &layout, u16::MAX)?;
        self.check_room(name)?;
        Ok(TopicEntry {
            name: name.to_owned(),
            queue_count,
            layout,
            from_config: false,
        })
    }

    /// Checks a delete request: the topic exists and is not from the config file.
    pub fn check_delete(&self, name: &str) -> Result<TopicChange, TopicTableError> {
        match self.topics.get(name) {
            None => Err(TopicTableError::NotFound { topic: shown(name) }),
            Some(entry) if entry.from_config => Err(TopicTableError::FromConfig {
                topic: name.to_owned(),
            }),
            Some(_) => Ok(TopicChange::Deleted(name.to_owned())),
        }
    }

    /// Applies a change (checked by shard 0) and increases the version. Every shard applies
    /// the same changes in the same order; a change that does not fit this table (which
    /// would mean the copies diverged) is applied anyway, with a warning.
    pub fn apply(&mut self, change: &TopicChange) {
        match change {
            TopicChange::Created(entry) => {
                if let Some(replaced) = self.topics.insert(entry.name.clone(), entry.clone()) {
                    tracing::warn!(topic = %replaced.name, "topic created again; replaced");
                }
            }
            TopicChange::Deleted(name) => {
                if self.topics.remove(name).is_none() {
                    tracing::warn!(topic = %name, "deleting a topic this table does not hold");
                }
            }
        }
        self.version += 1;
    }

    /// The topic named `name`.
    pub fn get(&self, name: &str) -> Option<&TopicEntry> {
        self.topics.get(name)
    }

    /// The shard owning queue `queue` of `topic` on a broker of `shard_count` shards; `None`
    /// if the topic is unknown, has no such queue, or its layout names a shard the broker
    /// does not have.
    pub fn queue_shard(&self, topic: &str, queue: u32, shard_count: u16) -> Option<ShardId> {
        let entry = self.topics.get(topic)?;
        if queue >= entry.queue_count {
            return None;
        }
        entry.layout.shard_for(QueueId(queue), shard_count)
    }

    /// Every topic as registered with the name servers and listed to clients, by name.
    pub fn wire_topics(&self) -> Vec<TopicConfig> {
        self.topics.values().map(TopicEntry::wire_config).collect()
    }

    /// Every topic, by name.
    pub fn iter(&self) -> impl Iterator<Item = &TopicEntry> {
        self.topics.values()
    }

    /// Increases with every applied change (1 after [`TopicTable::from_config`] and
    /// [`TopicTable::load`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of topics.
    pub fn len(&self) -> usize {
        self.topics.len()
    }

    /// Whether there are no topics.
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
    }

    /// A new topic `name` is not taken and fits under [`MAX_TOPICS`].
    fn check_room(&self, name: &str) -> Result<(), TopicTableError> {
        if self.topics.contains_key(name) {
            return Err(TopicTableError::Exists {
                topic: name.to_owned(),
            });
        }
        if self.topics.len() >= MAX_TOPICS {
            return Err(TopicTableError::TooManyTopics { limit: MAX_TOPICS });
        }
        Ok(())
    }
}

/// The rules every topic follows, whether requested or stored.
fn check_entry(
    name: &str,
    queue_count: u32,
    layout: &ShardLayout,
    shard_count: u16,
) -> Result<(), TopicTableError> {
    let invalid = |reason: String| TopicTableError::Invalid {
        topic: shown(name),
        reason,
    };
    if let Err(error) = spillway_storage::validate_topic(name) {
        return Err(invalid(match error {
            StorageError::BadTopic { reason, .. } => format!("not a valid topic name: {reason}"),
            other => other.to_string(),
        }));
    }
    if queue_count == 0 || queue_count > MAX_QUEUES_PER_TOPIC {
        return Err(invalid(format!(
            "{queue_count} queues is outside 1 to {MAX_QUEUES_PER_TOPIC} (MAX_QUEUES_PER_TOPIC)"
        )));
    }
    if let ShardLayout::Pinned(shards) = layout {
        if shards.len() != queue_count as usize {
            return Err(invalid(format!(
                "a pinned layout names one shard per queue: {} shards for {queue_count} queues",
                shards.len()
            )));
        }
        if let Some((queue, shard)) = shards
            .iter()
            .enumerate()
            .find(|(_, shard)| shard.0 >= shard_count)
        {
            return Err(invalid(format!(
                "queue {queue} is pinned to shard {shard}, but this broker has {shard_count} \
                 shards (0 to {})",
                shard_count.saturating_sub(1)
            )));
        }
    }
    Ok(())
}

/// A name as quoted in an error: a peer may send anything, so very long ones are cut.
fn shown(name: &str) -> String {
    name.chars().take(MAX_TOPIC_BYTES + 13).collect()
}

/// `storage.data_dir`, made absolute against the current directory.
fn data_dir(config: &BrokerConfig) -> Result<PathBuf, TopicTableError> {
    let dir = &config.storage.data_dir;
    std::path::absolute(dir).map_err(|source| TopicTableError::Io {
        operation: "resolve data directory",
        path: dir.clone(),
        source,
    })
}

/// Reads and parses `topics.json`; `None` if it does not exist.
fn read_stored(path: &Path) -> Result<Option<StoredTopics>, TopicTableError> {
    let io = |operation| {
        move |source| TopicTableError::Io {
            operation,
            path: path.to_owned(),
            source,
        }
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io("open")(error)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_TOPICS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    if bytes.len() as u64 > MAX_TOPICS_FILE_BYTES {
        return Err(TopicTableError::Corrupt {
            path: path.to_owned(),
            reason: format!("larger than {MAX_TOPICS_FILE_BYTES} bytes"),
        });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| TopicTableError::Corrupt {
            path: path.to_owned(),
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four shards; two config topics, one pinned.
    fn config(data_dir: &Path) -> BrokerConfig {
        let mut config = BrokerConfig::from_toml_str(
            r#"
cluster = "main"
broker_name = "broker-a"
name_servers = ["127.0.0.1:9876"]
listen_address = "127.0.0.1:10911"
shard_count = 4

[storage]
data_dir = "/replaced/below"

[[topics]]
name = "orders"
queues = 6

[[topics]]
name = "payments"
queues = 3
pins = { 0 = 3, 2 = 3 }
"#,
        )
        .expect("valid config");
        config.storage.data_dir = data_dir.to_owned();
        config
    }

    fn temp_dir() -> tempfile::TempDir {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        std::fs::create_dir_all(&base).expect("create target/tmp");
        tempfile::Builder::new()
            .prefix("topic-table")
            .tempdir_in(base)
            .expect("create test dir")
    }

    fn request(name: &str, queue_count: u32, layout: ShardLayout) -> TopicConfig {
        TopicConfig {
            topic: name.into(),
            queue_count,
            shard_layout: layout,
        }
    }

    fn pinned(shards: &[u16]) -> ShardLayout {
        ShardLayout::Pinned(shards.iter().copied().map(ShardId).collect())
    }

    #[test]
    fn from_config_resolves_layouts() {
        let dir = temp_dir();
        let table = TopicTable::from_config(&config(dir.path()));
        assert_eq!(table.version(), 1);
        assert_eq!(table.len(), 2);
        let orders = table.get("orders").expect("orders");
        assert_eq!(orders.queue_count, 6);
        assert_eq!(orders.layout, ShardLayout::RoundRobin);
        assert!(orders.from_config);
        let payments = table.get("payments").expect("payments");
        assert_eq!(payments.layout, pinned(&[3, 1, 3]));
        assert_eq!(table.queue_shard("orders", 5, 4), Some(ShardId(1)));
        assert_eq!(table.queue_shard("payments", 0, 4), Some(ShardId(3)));
        assert_eq!(table.queue_shard("payments", 1, 4), Some(ShardId(1)));
        assert_eq!(table.queue_shard("payments", 3, 4), None, "no queue 3");
        assert_eq!(table.queue_shard("unknown", 0, 4), None);
        let names: Vec<_> = table.wire_topics().into_iter().map(|t| t.topic).collect();
        assert_eq!(names, ["orders", "payments"]);
    }

    #[test]
    fn created_and_deleted_topics_survive_save_and_load() {
        let dir = temp_dir();
        // A data directory that does not exist yet: save creates it.
        let config = config(&dir.path().join("data"));
        let mut table = TopicTable::load(&config).expect("load without a file");
        assert_eq!(table.len(), 2);

        let entry = table
            .check_create(&request("clicks", 4, pinned(&[0, 1, 2, 3])), 4)
            .expect("create clicks");
        table
            .apply_and_save(&TopicChange::Created(entry), &config)
            .expect("save clicks");
        let entry = table.auto_create_entry("views", 8).expect("auto-create");
        assert_eq!(entry.layout, ShardLayout::RoundRobin);
        table
            .apply_and_save(&TopicChange::Created(entry), &config)
            .expect("save views");
        let change = table.check_delete("clicks").expect("delete clicks");
        let entry = table
            .check_create(&request("gone", 1, ShardLayout::RoundRobin), 4)
            .expect("create gone");
        table
            .apply_and_save(&TopicChange::Created(entry), &config)
            .expect("save gone");
        table.apply_and_save(&change, &config).expect("save delete");
        assert_eq!(table.version(), 5);

        let loaded = TopicTable::load(&config).expect("load");
        let names: Vec<_> = loaded.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(names, ["gone", "orders", "payments", "views"]);
        let views = loaded.get("views").expect("views");
        assert_eq!(views.queue_count, 8);
        assert!(!views.from_config);
        assert_eq!(loaded.get("orders"), table.get("orders"));
        assert_eq!(loaded.wire_topics(), table.wire_topics());

        // Only the created topics are stored.
        let text = std::fs::read_to_string(config.storage.data_dir.join(TOPICS_FILE_NAME))
            .expect("read topics.json");
        assert!(!text.contains("orders"), "{text}");
        assert!(text.contains("views"), "{text}");
        assert!(!config.storage.data_dir.join(TEMP_FILE_NAME).exists());
    }

    #[test]
    fn stored_pins_survive_save_and_load() {
        let dir = temp_dir();
        let config = config(dir.path());
        let mut table = TopicTable::from_config(&config);
        let entry = table
            .check_create(&request("clicks", 3, pinned(&[2, 0, 2])), 4)
            .expect("create");
        table
            .apply_and_save(&TopicChange::Created(entry), &config)
            .expect("save");
        let loaded = TopicTable::load(&config).expect("load");
        assert_eq!(
            loaded.get("clicks").expect("clicks").layout,
            pinned(&[2, 0, 2])
        );
        assert_eq!(loaded.queue_shard("clicks", 2, 4), Some(ShardId(2)));
    }

    #[test]
    fn create_refusals() {
        let dir = temp_dir();
        let table = TopicTable::from_config(&config(dir.path()));
        let refuse =
            |topic: TopicConfig| table.check_create(&topic, 4).expect_err("must be refused");
        for (topic, fragment) in [
            (
                request("", 1, ShardLayout::RoundRobin),
                "not a valid topic name",
            ),
            (
                request("a/b", 1, ShardLayout::RoundRobin),
                "not a valid topic name",
            ),
            (request("t", 0, ShardLayout::RoundRobin), "0 queues"),
            (
                request("t", MAX_QUEUES_PER_TOPIC + 1, ShardLayout::RoundRobin),
                "MAX_QUEUES_PER_TOPIC",
            ),
            (request("t", 3, pinned(&[0, 1])), "2 shards for 3 queues"),
            (
                request("t", 2, pinned(&[0, 4])),
                "queue 1 is pinned to shard 4",
            ),
        ] {
            let error = refuse(topic);
            assert!(
                matches!(error, TopicTableError::Invalid { .. }),
                "{error:?}"
            );
            assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
            assert!(error.to_string().contains(fragment), "{error}");
        }
        let error = refuse(request("orders", 1, ShardLayout::RoundRobin));
        assert!(matches!(error, TopicTableError::Exists { ref topic } if topic == "orders"));
        assert_eq!(error.error_code(), ErrorCode::TopicExists);
        assert!(matches!(
            table.auto_create_entry("orders", 1),
            Err(TopicTableError::Exists { .. })
        ));
        assert!(matches!(
            table.auto_create_entry("t", 0),
            Err(TopicTableError::Invalid { .. })
        ));
    }

    #[test]
    fn create_beyond_the_topic_limit_is_refused() {
        let dir = temp_dir();
        let mut table = TopicTable::from_config(&config(dir.path()));
        while table.len() < MAX_TOPICS {
            let entry = table
                .auto_create_entry(&format!("topic-{}", table.len()), 1)
                .expect("below the limit");
            table.apply(&TopicChange::Created(entry));
        }
        let error = table
            .check_create(&request("one-more", 1, ShardLayout::RoundRobin), 4)
            .expect_err("at the limit");
        assert!(
            matches!(error, TopicTableError::TooManyTopics { limit: MAX_TOPICS }),
            "{error:?}"
        );
        assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
    }

    #[test]
    fn delete_refusals() {
        let dir = temp_dir();
        let table = TopicTable::from_config(&config(dir.path()));
        let error = table.check_delete("orders").expect_err("config topic");
        assert!(matches!(error, TopicTableError::FromConfig { .. }));
        assert!(error.to_string().contains("config file"), "{error}");
        assert_eq!(error.error_code(), ErrorCode::InvalidArgument);
        let error = table.check_delete("unknown").expect_err("unknown topic");
        assert!(matches!(error, TopicTableError::NotFound { .. }));
        assert_eq!(error.error_code(), ErrorCode::TopicNotFound);
    }

    #[test]
    fn apply_changes_the_table_and_its_version() {
        let dir = temp_dir();
        let mut table = TopicTable::from_config(&config(dir.path()));
        let entry = table.auto_create_entry("views", 2).expect("create");
        table.apply(&TopicChange::Created(entry.clone()));
        assert_eq!(table.get("views"), Some(&entry));
        assert_eq!(table.version(), 2);
        table.apply(&TopicChange::Deleted("views".into()));
        assert_eq!(table.get("views"), None);
        assert_eq!(table.version(), 3);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn config_topic_wins_over_a_stored_duplicate() {
        let dir = temp_dir();
        let config = config(dir.path());
        std::fs::write(
            dir.path().join(TOPICS_FILE_NAME),
            r#"{"format_version": 1, "topics": [
                {"name": "orders", "queue_count": 1, "pins": [0]},
                {"name": "views", "queue_count": 2, "pins": null}
            ]}"#,
        )
        .expect("write topics.json");
        let table = TopicTable::load(&config).expect("load");
        let orders = table.get("orders").expect("orders");
        assert!(orders.from_config);
        assert_eq!(orders.queue_count, 6);
        assert_eq!(orders.layout, ShardLayout::RoundRobin);
        assert_eq!(table.get("views").expect("views").queue_count, 2);
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn a_damaged_topics_file_is_corrupt_naming_the_path() {
        let dir = temp_dir();
        let config = config(dir.path());
        let path = dir.path().join(TOPICS_FILE_NAME);
        for (text, fragment) in [
            ("{\"format_version\": 1, \"topics\": [", "EOF"),
            (
                "{\"format_version\": 2, \"topics\": []}",
                "format version 2",
            ),
            (
                "{\"format_version\": 1, \"topics\": [], \"extra\": 1}",
                "unknown field",
            ),
            (
                r#"{"format_version": 1, "topics": [
                    {"name": "a", "queue_count": 1, "pins": null},
                    {"name": "a", "queue_count": 1, "pins": null}]}"#,
                "stored twice",
            ),
            (
                r#"{"format_version": 1, "topics": [
                    {"name": "a", "queue_count": 2, "pins": [0, 7]}]}"#,
                "pinned to shard 7",
            ),
            (
                r#"{"format_version": 1, "topics": [
                    {"name": "a b", "queue_count": 1, "pins": null}]}"#,
                "not a valid topic name",
            ),
        ] {
            std::fs::write(&path, text).expect("write topics.json");
            match TopicTable::load(&config) {
                Err(TopicTableError::Corrupt {
                    path: named,
                    reason,
                }) => {
                    assert_eq!(named, path);
                    assert!(reason.contains(fragment), "{reason}");
                }
                other => panic!("expected Corrupt for {text}, got {other:?}"),
            }
        }
    }

    #[test]
    fn relative_data_dir_resolves_against_the_current_directory() {
        let config = config(Path::new("relative/data"));
        let expected = std::env::current_dir()
            .expect("current dir")
            .join("relative/data");
        assert_eq!(data_dir(&config).expect("resolve"), expected);
    }
}
