//! Tests of [`BrokerConfig`]: one per validation rule, each asserting the key path and the
//! reason of the error; the example file (valid, complete, its defaults true); and the
//! `queue -> shard` mapping, including that it agrees with what clients compute.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use spillway_storage::{FlushMode, QueueId, ShardId, StorageConfig};

use super::*;
use crate::cores::AvailableCores;

/// A small valid config; tests edit it with [`edited`].
const MINIMAL: &str = r#"
cluster = "main"
broker_name = "broker-a"
name_servers = ["127.0.0.1:9876"]
listen_address = "127.0.0.1:10911"
cores = [0, 1]

[storage]
data_dir = "/var/lib/spillway"

[[topics]]
name = "orders"
queues = 4
"#;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("broker.example.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

/// The machine the tests describe: four cores, 0 to 3.
fn four_cores() -> AvailableCores {
    AvailableCores::first(4)
}

/// `MINIMAL` with each `(dotted key, TOML value)` set, or removed where the value is
/// empty. A key path is top-level or `section.key`.
fn edited(edits: &[(&str, &str)]) -> String {
    let mut table: toml::Table = toml::from_str(MINIMAL).unwrap();
    for &(path, value) in edits {
        let (section, key) = match path.split_once('.') {
            Some((section, key)) => (Some(section), key),
            None => (None, path),
        };
        let target = match section {
            Some(section) => table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap(),
            None => &mut table,
        };
        if value.is_empty() {
            target.remove(key);
        } else {
            let parsed: toml::Table = toml::from_str(&format!("value = {value}")).unwrap();
            target.insert(key.to_owned(), parsed["value"].clone());
        }
    }
    toml::to_string(&table).unwrap()
}

fn parse(text: &str) -> Result<BrokerConfig, ConfigError> {
    BrokerConfig::from_toml_str_for(text, &four_cores())
}

/// Asserts that `text` is refused for `key`, with a reason containing `reason`.
#[track_caller]
fn assert_refused(text: &str, key: &str, reason: &str) -> ConfigError {
    let error = match parse(text) {
        Ok(config) => panic!("accepted, expected {key}: {reason}\n{config:#?}"),
        Err(error) => error,
    };
    assert_eq!(error.key(), Some(key), "{error}");
    let message = error.reason().unwrap();
    assert!(
        message.contains(reason),
        "{key}: {message:?} lacks {reason:?}"
    );
    assert!(!error.to_string().contains('\n'), "not one line: {error}");
    error
}

#[track_caller]
fn assert_edit_refused(edits: &[(&str, &str)], key: &str, reason: &str) -> ConfigError {
    assert_refused(&edited(edits), key, reason)
}

// ---- Reading the file ----------------------------------------------------------------

#[test]
fn minimal_config_is_valid_and_filled_with_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.broker_id, 0);
    assert!(config.is_master());
    assert!(!config.auto_create_topics);
    assert_eq!(config.auto_create_queues, DEFAULT_AUTO_CREATE_QUEUES);
    assert_eq!(config.shard_count(), 2);
    assert_eq!(config.limits, LimitSettings::default());
    let engine = StorageConfig::new("/var/lib/spillway");
    assert_eq!(config.storage.flush, FlushMode::Sync);
    assert_eq!(config.storage.segment_size_bytes, engine.segment_size_bytes);
    assert_eq!(config.storage.retention_hours, engine.retention_hours);
    assert_eq!(config.advertised_endpoint().to_string(), "127.0.0.1:10911");
}

#[test]
fn misspelled_key_is_refused_with_its_path_and_line() {
    let text = MINIMAL.replace("data_dir", "data_dir = \"/x\"\nsegmnt_size_bytes = 4096\n#");
    let error = assert_refused(&text, "storage.segmnt_size_bytes", "unknown field");
    let ConfigError::Invalid { line, reason, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*line, Some(10));
    assert!(
        reason.contains("segment_size_bytes"),
        "lists the known keys: {reason}"
    );
    assert!(error.to_string().ends_with("(line 10)"), "{error}");
}

#[test]
fn unknown_top_level_key_is_refused() {
    assert_edit_refused(&[("brokerName", "\"b\"")], "brokerName", "unknown field");
}

#[test]
fn unknown_key_in_a_topic_is_refused_with_its_index() {
    let text = format!("{MINIMAL}\n[[topics]]\nname = \"audit\"\nqueues = 2\nqueue = 3\n");
    assert_refused(&text, "topics[1].queue", "unknown field");
}

#[test]
fn wrong_type_is_refused_with_the_key_path() {
    let text = format!("{MINIMAL}\n[[topics]]\nname = \"audit\"\nqueues = \"eight\"\n");
    assert_refused(&text, "topics[1].queues", "invalid type: string");
    assert_edit_refused(
        &[("storage.flush", "\"sometimes\"")],
        "storage.flush",
        "sync",
    );
    assert_edit_refused(&[("broker_id", "-1")], "broker_id", "invalid value");
}

#[test]
fn missing_required_keys_are_named() {
    assert_edit_refused(&[("broker_name", "")], "broker_name", "required");
    assert_edit_refused(&[("name_servers", "")], "name_servers", "required");
    let text = format!("{MINIMAL}\n[[topics]]\nname = \"audit\"\n");
    assert_refused(&text, "topics[1].queues", "required");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let error = parse("cluster = \"main\"\nbroker_name = \n").unwrap_err();
    let ConfigError::Syntax { line, .. } = error else {
        panic!("{error:?}");
    };
    assert_eq!(line, 2);
    assert!(matches!(
        parse("cluster = \"a\"\ncluster = \"b\"\n"),
        Err(ConfigError::Syntax { line: 2, .. })
    ));
}

#[test]
fn load_reports_a_missing_file_with_its_path() {
    let error = BrokerConfig::load_for("/nonexistent/broker.toml", &four_cores()).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
    assert!(
        error.to_string().contains("/nonexistent/broker.toml"),
        "{error}"
    );
}

#[test]
fn load_refuses_an_oversized_file() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broker.toml");
    let padding = "#".repeat(MAX_CONFIG_FILE_BYTES as usize + 1);
    std::fs::write(&path, format!("{MINIMAL}{padding}")).unwrap();
    let error = BrokerConfig::load_for(&path, &four_cores()).unwrap_err();
    assert!(matches!(error, ConfigError::TooLarge { .. }), "{error:?}");
}

// ---- Identity ------------------------------------------------------------------------

#[test]
fn cluster_and_broker_names_must_be_plain_names() {
    assert_edit_refused(&[("cluster", "\"\"")], "cluster", "1 to 127 bytes");
    assert_edit_refused(
        &[("broker_name", "\"broker a\"")],
        "broker_name",
        "only letters",
    );
}

#[test]
fn broker_id_is_bounded() {
    assert_edit_refused(&[("broker_id", "256")], "broker_id", "MAX_BROKER_ID");
    assert!(parse(&edited(&[("broker_id", "255")])).is_ok());
}

#[test]
fn only_a_master_auto_creates_topics() {
    let config = parse(&edited(&[("broker_id", "1")])).unwrap();
    assert!(!config.is_master());
    assert_edit_refused(
        &[("broker_id", "1"), ("auto_create_topics", "true")],
        "auto_create_topics",
        "replica",
    );
    assert!(parse(&edited(&[("auto_create_topics", "true")])).is_ok());
}

// ---- Network -------------------------------------------------------------------------

#[test]
fn listen_address_is_an_ip_and_a_real_port() {
    assert_edit_refused(
        &[("listen_address", "\"broker.example.com:10911\"")],
        "listen_address",
        "not an IP address and port",
    );
    // Port 0 (any free port) is fine, but then the advertised port is the bound one.
    assert!(parse(&edited(&[("listen_address", "\"127.0.0.1:0\"")])).is_ok());
    assert_edit_refused(
        &[
            ("listen_address", "\"127.0.0.1:0\""),
            ("advertised_address", "\"10.0.0.1:10911\""),
        ],
        "advertised_address",
        "port 0",
    );
}

#[test]
fn cluster_intervals_are_bounded() {
    for key in [
        "heartbeat_interval_ms",
        "name_server_timeout_ms",
        "client_timeout_ms",
    ] {
        assert_edit_refused(&[(key, "0")], key, "outside 1 to");
        assert!(parse(&edited(&[(key, "100")])).is_ok());
    }
    assert_edit_refused(
        &[("limits.max_pull_wait_ms", "0")],
        "limits.max_pull_wait_ms",
        "outside 1 to",
    );
}

#[test]
fn advertised_address_is_required_when_listening_on_all_interfaces() {
    assert_edit_refused(
        &[("listen_address", "\"0.0.0.0:10911\"")],
        "advertised_address",
        "required",
    );
    let config = parse(&edited(&[
        ("listen_address", "\"[::]:10911\""),
        ("advertised_address", "\"broker-a.example.com:10911\""),
    ]))
    .unwrap();
    assert_eq!(
        config.advertised_endpoint().to_string(),
        "broker-a.example.com:10911"
    );
    assert_edit_refused(
        &[("advertised_address", "\"0.0.0.0:10911\"")],
        "advertised_address",
        "unspecified address",
    );
    assert_edit_refused(
        &[("advertised_address", "\"10.0.0.1\"")],
        "advertised_address",
        "has no port",
    );
}

#[test]
fn name_servers_are_required_valid_and_distinct() {
    assert_edit_refused(&[("name_servers", "[]")], "name_servers", "at least one");
    assert_edit_refused(
        &[("name_servers", "[\"10.0.0.1:9876\", \"ns_2:9876\"]")],
        "name_servers[1]",
        "neither an IP address nor a valid host name",
    );
    assert_edit_refused(
        &[(
            "name_servers",
            "[\"ns1.example.com:9876\", \"ns1.example.com:9876\"]",
        )],
        "name_servers[1]",
        "listed twice",
    );
    assert_edit_refused(
        &[("name_servers", "[\"10.0.0.1:0\"]")],
        "name_servers[0]",
        "port 0",
    );
    let many: Vec<String> = (0..=MAX_NAME_SERVERS)
        .map(|index| format!("\"10.0.0.{index}:9876\""))
        .collect();
    assert_edit_refused(
        &[("name_servers", &format!("[{}]", many.join(", ")))],
        "name_servers",
        "MAX_NAME_SERVERS",
    );
}

// ---- Shards --------------------------------------------------------------------------

#[test]
fn cores_or_shard_count_exactly_one() {
    assert_edit_refused(&[("shard_count", "2")], "shard_count", "not both");
    assert_edit_refused(&[("cores", "")], "cores", "required");
    let config = parse(&edited(&[("cores", ""), ("shard_count", "3")])).unwrap();
    assert_eq!(config.shard_count(), 3);
    assert_eq!(config.shard_core(ShardId(2)), None);
}

#[test]
fn duplicate_cores_are_refused() {
    assert_edit_refused(
        &[("cores", "[1, 2, 1]")],
        "cores[2]",
        "core 1 is listed twice",
    );
}

#[test]
fn cores_must_be_available_to_the_process() {
    assert_edit_refused(
        &[("cores", "[0, 4]")],
        "cores[1]",
        "core 4 does not exist or is not available to this process (available cores: 0-3)",
    );
    // Under a cpuset of 4-7, core 0 is not available and core 5 is.
    let cpuset: AvailableCores = (4..8).collect();
    let text = edited(&[("cores", "[5, 0]")]);
    let error = BrokerConfig::from_toml_str_for(&text, &cpuset).unwrap_err();
    assert_eq!(error.key(), Some("cores[1]"), "{error}");
    assert!(
        error.to_string().contains("available cores: 4-7"),
        "{error}"
    );
    let config = BrokerConfig::from_toml_str_for(&edited(&[("cores", "[5, 7]")]), &cpuset).unwrap();
    assert_eq!(config.shard_core(ShardId(1)), Some(7));
}

#[test]
fn shard_count_and_cores_are_bounded() {
    assert_edit_refused(
        &[("cores", ""), ("shard_count", "0")],
        "shard_count",
        "1 to 256",
    );
    assert_edit_refused(
        &[("cores", ""), ("shard_count", "257")],
        "shard_count",
        "MAX_SHARDS",
    );
    assert_edit_refused(&[("cores", "[]")], "cores", "1 to 256");
}

#[test]
fn shard_overrides_must_name_existing_shards_once() {
    let override_of = |shard: u16, data_dir: &str| {
        format!("{MINIMAL}\n[[shards]]\nshard = {shard}\ndata_dir = \"{data_dir}\"\n")
    };
    assert_refused(
        &override_of(2, "/disk2"),
        "shards[0].shard",
        "shard 2 does not exist",
    );
    assert_refused(
        &override_of(1, ""),
        "shards[0].data_dir",
        "must not be empty",
    );
    let twice = format!(
        "{}[[shards]]\nshard = 1\ndata_dir = \"/disk3\"\n",
        override_of(1, "/disk2")
    );
    assert_refused(&twice, "shards[1].shard", "overridden twice");
}

// ---- Storage -------------------------------------------------------------------------

#[test]
fn data_dir_is_required() {
    assert_edit_refused(&[("storage.data_dir", "")], "storage.data_dir", "required");
    assert_edit_refused(
        &[("storage.data_dir", "\"\"")],
        "storage.data_dir",
        "required",
    );
}

#[test]
fn intervals_are_refused_under_their_own_key() {
    for key in [
        "storage.flush_interval_ms",
        "storage.checkpoint_interval_ms",
        "storage.retention_check_interval_ms",
        "storage.retention_hours",
    ] {
        assert_edit_refused(&[(key, "0")], key, "above 0");
    }
}

#[test]
fn engine_limits_are_checked_by_the_engine_under_the_broker_key() {
    assert_edit_refused(
        &[("storage.segment_size_bytes", "65536")],
        "storage.segment_size_bytes",
        "hold the largest write",
    );
    assert_edit_refused(
        &[("storage.write_buffer_bytes", "5000")],
        "storage.write_buffer_bytes",
        "multiple of 4096",
    );
    assert_edit_refused(
        &[("storage.tail_cache_bytes", "4096")],
        "storage.tail_cache_bytes",
        "at least write_buffer_bytes",
    );
    assert_edit_refused(
        &[("storage.disk_hard_mark_percent", "80.0")],
        "storage.disk_hard_mark_percent",
        "high <= hard",
    );
    assert_edit_refused(
        &[("limits.max_batch_bytes", "1048576")],
        "limits.max_batch_bytes",
        "at least max_record_bytes",
    );
    assert_edit_refused(
        &[("limits.max_record_bytes", "50")],
        "limits.max_record_bytes",
        "must be between",
    );
    assert_edit_refused(
        &[("limits.max_queues_per_shard", "0")],
        "limits.max_queues_per_shard",
        "above 0",
    );
}

// ---- Limits --------------------------------------------------------------------------

#[test]
fn frames_must_carry_a_full_batch() {
    assert_edit_refused(
        &[("limits.max_frame_bytes", "8388608")],
        "limits.max_frame_bytes",
        "cannot carry a full batch",
    );
    assert_edit_refused(
        &[("limits.max_frame_bytes", "1024")],
        "limits.max_frame_bytes",
        "outside 4096 to",
    );
}

#[test]
fn connection_limits_are_bounded() {
    assert_edit_refused(
        &[("limits.max_connections_per_shard", "0")],
        "limits.max_connections_per_shard",
        "outside 1 to",
    );
    assert_edit_refused(
        &[("limits.max_in_flight_requests_per_connection", "65537")],
        "limits.max_in_flight_requests_per_connection",
        "outside 1 to 65536",
    );
}

#[test]
fn configured_queues_must_fit_each_shard() {
    let text = format!(
        "{}[[topics]]\nname = \"audit\"\nqueues = 6\n",
        edited(&[("limits.max_queues_per_shard", "4")])
    );
    // orders: 2 + 2; audit: 3 + 3 → 5 per shard.
    assert_refused(&text, "limits.max_queues_per_shard", "5 queues on shard 0");
}

// ---- Topics --------------------------------------------------------------------------

fn with_topic(topic: &str) -> String {
    format!("{MINIMAL}\n[[topics]]\n{topic}\n")
}

#[test]
fn topic_names_follow_the_engine_rules() {
    assert_refused(
        &with_topic("name = \"bad/name\"\nqueues = 1"),
        "topics[1].name",
        "may contain only letters, digits and _ . % | -",
    );
    assert_refused(
        &with_topic("name = \"..\"\nqueues = 1"),
        "topics[1].name",
        "must not be",
    );
}

#[test]
fn duplicate_topics_are_refused() {
    assert_refused(
        &with_topic("name = \"orders\"\nqueues = 1"),
        "topics[1].name",
        "defined twice (also topics[0])",
    );
}

#[test]
fn queue_counts_are_bounded() {
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 1025"),
        "topics[1].queues",
        "outside 1 to 1024 (MAX_QUEUES_PER_TOPIC)",
    );
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 0"),
        "topics[1].queues",
        "outside",
    );
    assert_edit_refused(
        &[("auto_create_queues", "0")],
        "auto_create_queues",
        "outside",
    );
}

#[test]
fn pins_must_name_existing_queues_and_shards() {
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 4\npins = { 9 = 0 }"),
        "topics[1].pins.9",
        "queue 9 does not exist",
    );
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 4\npins = { 1 = 2 }"),
        "topics[1].pins.1",
        "shard 2 does not exist: this broker has 2 shards",
    );
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 4\npins = { first = 0 }"),
        "topics[1].pins",
        "not a queue number",
    );
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 4\npins = { 01 = 0 }"),
        "topics[1].pins",
        "not a queue number",
    );
    assert_refused(
        &with_topic("name = \"audit\"\nqueues = 4\npins = { 1 = -1 }"),
        "topics[1].pins.1",
        "invalid value",
    );
}

#[test]
fn too_many_topics_are_refused() {
    let mut text = MINIMAL.to_owned();
    for index in 0..MAX_TOPICS {
        text.push_str(&format!("[[topics]]\nname = \"t{index}\"\nqueues = 1\n"));
    }
    assert_refused(&text, "topics", "MAX_TOPICS");
}

// ---- What shards derive from the config ----------------------------------------------

#[test]
fn queues_go_round_robin_unless_pinned() {
    let text = with_topic("name = \"payments\"\nqueues = 5\npins = { 0 = 1, 3 = 1 }");
    let config = parse(&text).unwrap();
    let shards = |topic: &str, queues: u32| -> Vec<u16> {
        (0..queues)
            .map(|queue| config.queue_shard(topic, QueueId(queue)).0)
            .collect()
    };
    assert_eq!(shards("orders", 4), [0, 1, 0, 1]);
    assert_eq!(shards("payments", 5), [1, 1, 0, 1, 0]);
    // An unconfigured (auto-created) topic goes round-robin.
    assert_eq!(shards("unknown", 3), [0, 1, 0]);
    assert_eq!(config.queues_per_shard(), [2 + 2, 2 + 3]);
}

#[test]
fn registered_layouts_give_clients_the_same_shards() {
    let config = BrokerConfig::load_for(example_path(), &AvailableCores::first(2)).unwrap();
    let shard_count = config.shard_count();
    let wire_topics = config.wire_topics();
    assert_eq!(wire_topics.len(), config.topics.len());
    for (topic, registered) in config.topics.iter().zip(&wire_topics) {
        assert_eq!(registered.queue_count, topic.queues);
        assert_eq!(
            matches!(registered.shard_layout, ShardLayout::RoundRobin),
            topic.pins.is_empty()
        );
        for queue in 0..topic.queues {
            let client = registered
                .shard_layout
                .shard_for(spillway_wire::QueueId(queue), shard_count)
                .unwrap();
            assert_eq!(client.0, config.queue_shard(&topic.name, QueueId(queue)).0);
        }
    }
}

#[test]
fn each_shard_gets_its_storage_config() {
    let text = format!(
        "{}[[shards]]\nshard = 1\ndata_dir = \"/disk2/spillway\"\n",
        edited(&[
            ("storage.flush", "\"async\""),
            ("storage.retention_hours", "24"),
            ("limits.max_queues_per_shard", "100"),
        ])
    );
    let config = parse(&text).unwrap();
    let shard_0 = config.storage_config(ShardId(0));
    let shard_1 = config.storage_config(ShardId(1));
    assert_eq!(shard_0.shard_dir(), Path::new("/var/lib/spillway/shard-0"));
    assert_eq!(shard_1.shard_dir(), Path::new("/disk2/spillway/shard-1"));
    for storage in [&shard_0, &shard_1] {
        assert_eq!(storage.flush, FlushMode::Async);
        assert_eq!(storage.retention_hours, 24);
        assert_eq!(storage.max_queues, 100);
        assert!(!storage.repair);
        storage.validate().unwrap();
    }
    assert_eq!(config.shard_core(ShardId(1)), Some(1));
}

#[test]
#[should_panic(expected = "shard 2 out of range")]
fn asking_for_a_shard_that_does_not_exist_is_a_bug() {
    parse(MINIMAL).unwrap().storage_config(ShardId(2));
}

#[test]
fn oversubscribed_shard_count_is_a_warning() {
    let config = parse(&edited(&[("cores", ""), ("shard_count", "8")])).unwrap();
    let warnings = config.warnings(&four_cores());
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("shards will share cores"),
        "{warnings:?}"
    );
    assert!(parse(MINIMAL).unwrap().warnings(&four_cores()).is_empty());
}

// ---- The example file ----------------------------------------------------------------

#[test]
fn example_config_is_valid() {
    let config = BrokerConfig::load_for(example_path(), &AvailableCores::first(2)).unwrap();
    assert_eq!(config.shard_count(), 2);
    assert_eq!(config.topics.len(), 2);
    assert_eq!(
        config.shard_data_dir(ShardId(1)),
        Path::new("/mnt/disk2/spillway")
    );
}

#[test]
fn example_config_shows_the_defaults() {
    let config = BrokerConfig::load_for(example_path(), &AvailableCores::first(2)).unwrap();
    let defaults = StorageSettings {
        data_dir: config.storage.data_dir.clone(),
        ..StorageSettings::default()
    };
    assert_eq!(config.storage, defaults);
    assert_eq!(config.limits, LimitSettings::default());
    assert_eq!(config.broker_id, 0);
    assert_eq!(config.listen_address.to_string(), DEFAULT_LISTEN_ADDRESS);
    assert_eq!(config.heartbeat_interval_ms, DEFAULT_HEARTBEAT_INTERVAL_MS);
    assert_eq!(
        config.name_server_timeout_ms,
        DEFAULT_NAME_SERVER_TIMEOUT_MS
    );
    assert_eq!(config.client_timeout_ms, DEFAULT_CLIENT_TIMEOUT_MS);
    assert!(!config.auto_create_topics);
    assert_eq!(config.auto_create_queues, DEFAULT_AUTO_CREATE_QUEUES);
}

/// Every key the example mentions, set or commented out (`# key = value`), by section
/// (`""` for the top level, `storage`, `topics`, …).
fn example_keys(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        let setting = line.strip_prefix("# ").unwrap_or(line);
        let Some((key, _)) = setting.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            keys.entry(section.clone())
                .or_default()
                .insert(key.to_owned());
        }
    }
    keys
}

/// Every key of the config structs, by section, from serializing a config that has every
/// list non-empty (so the keys of list items are seen too).
fn struct_keys(config: &BrokerConfig) -> BTreeMap<String, BTreeSet<String>> {
    let value = serde_json::to_value(config).unwrap();
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, value) in value.as_object().unwrap() {
        if let serde_json::Value::Array(items) = value {
            assert!(
                !items.is_empty(),
                "{key} is empty: its items' keys are not seen"
            );
        }
        // A table or a list of tables is a section; anything else is a top-level key.
        let items: Vec<&serde_json::Map<String, serde_json::Value>> = match value {
            serde_json::Value::Object(table) => vec![table],
            serde_json::Value::Array(items) => {
                items.iter().filter_map(|item| item.as_object()).collect()
            }
            _ => vec![],
        };
        if items.is_empty() {
            keys.entry(String::new()).or_default().insert(key.clone());
        }
        for item in items {
            for (field, value) in item {
                // Sections are one level deep; `pins` holds data (queue numbers), not keys.
                assert!(
                    !value.is_object() || field == "pins",
                    "{key}.{field} is a nested table: teach this test its keys"
                );
                keys.entry(key.clone()).or_default().insert(field.clone());
            }
        }
    }
    keys
}

#[test]
fn example_config_documents_every_key() {
    let text = example_text();
    let mut config = BrokerConfig::load_for(example_path(), &AvailableCores::first(2)).unwrap();
    // Fill the alternatives the example leaves commented out, so they are serialized too.
    config.shard_count = Some(2);
    let documented = example_keys(&text);
    let declared = struct_keys(&config);
    for (section, keys) in &declared {
        for key in keys {
            let found = documented
                .get(section)
                .is_some_and(|keys| keys.contains(key));
            let name = if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            assert!(found, "{name} is not in broker.example.toml");
        }
    }
    // And the other way round: no stale key lingers in a comment.
    for (section, keys) in &documented {
        for key in keys {
            assert!(
                declared
                    .get(section)
                    .is_some_and(|declared| declared.contains(key)),
                "broker.example.toml mentions {section}.{key}, which is not a key"
            );
        }
    }
    // Each key is explained where it first appears: the line above it is a comment.
    let lines: Vec<&str> = text.lines().collect();
    let mut explained = BTreeSet::new();
    let mut section = String::new();
    for (index, line) in lines.iter().enumerate() {
        if let Some(header) = line.strip_prefix('[') {
            section = header.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        let setting = line.strip_prefix("# ").unwrap_or(line);
        let Some((key, _)) = setting.split_once(" = ") else {
            continue;
        };
        let is_key = documented
            .get(&section)
            .is_some_and(|keys| keys.contains(key));
        if is_key && explained.insert((section.clone(), key.to_owned())) {
            let previous = index.checked_sub(1).map_or("", |previous| lines[previous]);
            assert!(
                previous.starts_with("# "),
                "line {}: {line:?} has no comment above it",
                index + 1
            );
        }
    }
}
