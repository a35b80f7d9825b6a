//! [`BrokerConfigBuilder`] and [`Broker`]: the real `spillway-broker` binary, started from a
//! TOML config file the test writes, on a free loopback port.
//!
//! A broker's directory (config file, stderr log, data directory) lives under the checkout's
//! target directory ([`crate::artifacts::scratch_directory`]: the commit log needs a file
//! system that takes O_DIRECT) and outlives every run of the broker within one test, so
//! [`Broker::restart`] starts a new process on the same config and data, as an operator
//! would after a crash or an upgrade. It is removed when the [`Broker`] is dropped. The
//! listen port is 0 (any free port), so each run gets a new address: connect again after a
//! restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

use tempfile::TempDir;
use toml::{Table, Value};

use crate::artifacts::{broker_binary, scratch_directory};
use crate::server_process::{log_tail, ServerProcess};
use crate::wire_client::WireClient;

/// Shards of a test broker: two, so that queues and connections land on more than one.
pub const TEST_SHARD_COUNT: u16 = 2;

/// How often a test broker heartbeats to its name servers, in milliseconds: short, so that
/// expiry tests run in seconds.
pub const TEST_HEARTBEAT_INTERVAL_MS: u64 = 200;

/// Commit-log segment size of a test broker: small, so tests cross segment boundaries.
pub const TEST_SEGMENT_SIZE_BYTES: u64 = 8 << 20;

/// Tail cache of each shard of a test broker.
pub const TEST_TAIL_CACHE_BYTES: u64 = 16 << 20;

/// When the broker acknowledges an append (`storage.flush`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// After an fdatasync covering it.
    Sync,
    /// After its write completed.
    Async,
}

impl Flush {
    fn as_str(self) -> &'static str {
        match self {
            Flush::Sync => "sync",
            Flush::Async => "async",
        }
    }
}

/// A broker's config file, built up key by key.
#[derive(Clone, Debug)]
pub struct BrokerConfigBuilder {
    root: Table,
    topics: Vec<Value>,
}

impl BrokerConfigBuilder {
    /// A test broker registering with `name_servers`: cluster `test`, broker `broker-a`,
    /// `127.0.0.1:0`, [`TEST_SHARD_COUNT`] shards, heartbeats every
    /// [`TEST_HEARTBEAT_INTERVAL_MS`], `sync` flush, small segments and tail cache, no
    /// topics.
    pub fn new(name_servers: &[SocketAddr]) -> BrokerConfigBuilder {
        let mut root = Table::new();
        root.insert("cluster".into(), "test".into());
        root.insert("broker_name".into(), "broker-a".into());
        root.insert("listen_address".into(), "127.0.0.1:0".into());
        root.insert(
            "name_servers".into(),
            Value::Array(
                name_servers
                    .iter()
                    .map(|address| Value::String(address.to_string()))
                    .collect(),
            ),
        );
        root.insert("shard_count".into(), i64::from(TEST_SHARD_COUNT).into());
        root.insert(
            "heartbeat_interval_ms".into(),
            toml_integer(TEST_HEARTBEAT_INTERVAL_MS),
        );
        let mut storage = Table::new();
        storage.insert("flush".into(), Flush::Sync.as_str().into());
        storage.insert(
            "segment_size_bytes".into(),
            toml_integer(TEST_SEGMENT_SIZE_BYTES),
        );
        storage.insert(
            "tail_cache_bytes".into(),
            toml_integer(TEST_TAIL_CACHE_BYTES),
        );
        root.insert("storage".into(), Value::Table(storage));
        BrokerConfigBuilder {
            root,
            topics: Vec::new(),
        }
    }

    /// Sets `cluster`.
    pub fn cluster(self, cluster: &str) -> BrokerConfigBuilder {
        self.set("cluster", cluster)
    }

    /// Sets `broker_name`.
    pub fn broker_name(self, broker_name: &str) -> BrokerConfigBuilder {
        self.set("broker_name", broker_name)
    }

    /// Sets `shard_count`.
    pub fn shard_count(self, shard_count: u16) -> BrokerConfigBuilder {
        self.set("shard_count", i64::from(shard_count))
    }

    /// Sets `heartbeat_interval_ms`.
    pub fn heartbeat_interval_ms(self, heartbeat_interval_ms: u64) -> BrokerConfigBuilder {
        self.set("heartbeat_interval_ms", toml_integer(heartbeat_interval_ms))
    }

    /// Sets `storage.flush`.
    pub fn flush(self, flush: Flush) -> BrokerConfigBuilder {
        self.set("storage.flush", flush.as_str())
    }

    /// Sets `auto_create_topics`.
    pub fn auto_create_topics(self, auto_create_topics: bool) -> BrokerConfigBuilder {
        self.set("auto_create_topics", auto_create_topics)
    }

    /// Adds a `[[topics]]` entry (round-robin over the shards).
    pub fn topic(mut self, name: &str, queues: u32) -> BrokerConfigBuilder {
        let mut topic = Table::new();
        topic.insert("name".into(), name.into());
        topic.insert("queues".into(), i64::from(queues).into());
        self.topics.push(Value::Table(topic));
        self
    }

    /// Sets any key, by its dotted path (`limits.max_record_bytes`), creating the tables on
    /// the way.
    pub fn set(mut self, key_path: &str, value: impl Into<Value>) -> BrokerConfigBuilder {
        let mut keys: Vec<&str> = key_path.split('.').collect();
        let last = keys.pop().expect("split gives at least one key");
        let mut table = &mut self.root;
        for key in keys {
            let entry = table
                .entry(key.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            table = entry
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key} in {key_path} is not a table"));
        }
        table.insert(last.to_owned(), value.into());
        self
    }

    /// The config file's text, with `data_dir` as `storage.data_dir`.
    pub fn render(&self, data_dir: &Path) -> String {
        let data_dir = data_dir
            .to_str()
            .unwrap_or_else(|| panic!("{} is not UTF-8", data_dir.display()));
        let mut root = self.clone().set("storage.data_dir", data_dir).root;
        if !self.topics.is_empty() {
            root.insert("topics".into(), Value::Array(self.topics.clone()));
        }
        toml::to_string(&root).expect("a TOML table serializes")
    }

    /// The `broker_name` set.
    pub fn name(&self) -> &str {
        self.root
            .get("broker_name")
            .and_then(Value::as_str)
            .expect("broker_name is always set")
    }

    /// Writes the config into a new broker directory and starts the broker.
    pub fn start(self) -> Broker {
        Broker::start(self)
    }

    /// Writes the config into a new broker directory without starting anything (for
    /// `--check`, or to start later with [`Broker::restart`]).
    pub fn write(self) -> Broker {
        Broker::prepare(self)
    }
}

fn toml_integer(value: u64) -> Value {
    Value::Integer(i64::try_from(value).expect("a config integer fits i64"))
}

/// A broker's directory and, while it runs, its process.
#[derive(Debug)]
pub struct Broker {
    /// The current run, if any.
    process: Option<ServerProcess>,
    name: String,
    /// Config, log and data; outlives the runs. Removed on drop, unless the test failed.
    directory: Option<TempDir>,
    directory_path: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    runs: u32,
}

impl Broker {
    /// Writes `config` into a new directory and starts the broker; returns once it prints
    /// `listening on ADDR` (panics, quoting its log, if it exits or stays silent).
    pub fn start(config: BrokerConfigBuilder) -> Broker {
        let mut broker = Broker::prepare(config);
        broker.restart();
        broker
    }

    fn prepare(config: BrokerConfigBuilder) -> Broker {
        let directory = tempfile::Builder::new()
            .prefix("broker-")
            .tempdir_in(scratch_directory())
            .expect("a broker directory under target/tmp");
        let data_dir = directory.path().join("data");
        let config_path = directory.path().join("broker.toml");
        let log_path = directory.path().join("broker.log");
        std::fs::write(&config_path, config.render(&data_dir))
            .unwrap_or_else(|error| panic!("write {}: {error}", config_path.display()));
        Broker {
            process: None,
            name: config.name().to_owned(),
            directory_path: directory.path().to_owned(),
            directory: Some(directory),
            config_path,
            log_path,
            runs: 0,
        }
    }

    /// Starts the broker again on the same config file and data (stopping it first with
    /// SIGTERM, which must exit 0, if it still runs). The new run listens on a new port.
    pub fn restart(&mut self) {
        if self.process.is_some() {
            let status = self.stop(libc::SIGTERM);
            assert!(
                status.success(),
                "broker {} exited with {status} on SIGTERM\n{}",
                self.name,
                self.log_tail()
            );
        }
        self.runs += 1;
        let mut command = Command::new(broker_binary());
        command
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.directory_path);
        let what = format!("broker {} (run {})", self.name, self.runs);
        self.process = Some(ServerProcess::start(&what, command, &self.log_path));
    }

    /// Replaces the config file (keeping the data directory) for the next
    /// [`Broker::restart`].
    pub fn rewrite_config(&mut self, config: BrokerConfigBuilder) {
        let data_dir = self.directory_path.join("data");
        std::fs::write(&self.config_path, config.render(&data_dir))
            .unwrap_or_else(|error| panic!("write {}: {error}", self.config_path.display()));
    }

    /// The address the current run printed.
    pub fn address(&self) -> SocketAddr {
        self.running().address()
    }

    /// A new connection to the current run.
    pub fn connect(&self) -> WireClient {
        WireClient::connect(self.address())
    }

    /// Whether a run is going (and has not exited on its own).
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ServerProcess::is_running)
    }

    /// Sends `signal` to the current run and waits for its exit status.
    pub fn stop(&mut self, signal: i32) -> ExitStatus {
        let mut process = self
            .process
            .take()
            .unwrap_or_else(|| panic!("broker {} is not running", self.name));
        process.stop(signal)
    }

    /// Kills the current run with SIGKILL (no chance to clean up), and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.stop(libc::SIGKILL)
    }

    /// Runs `spillway-broker --config <file> --check` on this broker's config.
    pub fn check_config(&self) -> Output {
        Command::new(broker_binary())
            .arg("--config")
            .arg(&self.config_path)
            .arg("--check")
            .current_dir(&self.directory_path)
            .output()
            .unwrap_or_else(|error| panic!("run spillway-broker --check: {error}"))
    }

    /// The `broker_name` of its config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The data directory (`storage.data_dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.directory_path.join("data")
    }

    /// The tail of its log (all runs), for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, &format!("broker {}", self.name))
    }

    fn running(&self) -> &ServerProcess {
        self.process
            .as_ref()
            .unwrap_or_else(|| panic!("broker {} is not running", self.name))
    }
}

impl Drop for Broker {
    /// Kills the run, then removes the directory; when the test is failing, keeps the
    /// directory (data and log) for a post-mortem and says where it is.
    fn drop(&mut self) {
        drop(self.process.take());
        if std::thread::panicking() {
            if let Some(directory) = self.directory.take() {
                let kept = directory.keep();
                eprintln!(
                    "broker {}: kept {} for inspection\n{}",
                    self.name,
                    kept.display(),
                    self.log_tail()
                );
            }
        }
    }
}
