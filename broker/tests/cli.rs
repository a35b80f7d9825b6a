//! The `spillway-broker` command line as an operator meets it: `--check` prints the layout
//! and exits 0, a bad config is one line naming the key and exit status 2, and a broker
//! that cannot take its port says so and exits 1. (Serving is tested across processes in
//! the `tests/` crate.)
//!
//! Configs here use `shard_count`, not `cores`, so the tests pass on any machine.

use std::path::Path;
use std::process::{Command, Output};

const VALID: &str = r#"
cluster = "main"
broker_name = "broker-a"
listen_address = "127.0.0.1:10911"
name_servers = ["127.0.0.1:9876"]
shard_count = 2

[storage]
data_dir = "/var/lib/spillway"

[[topics]]
name = "orders"
queues = 4

[[topics]]
name = "payments"
queues = 2
pins = { 0 = 1 }
"#;

fn run(config: &str, arguments: &[&str]) -> Output {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("broker.toml");
    std::fs::write(&path, config).unwrap();
    run_with_path(&path, arguments)
}

fn run_with_path(path: &Path, arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway-broker"))
        .arg("--config")
        .arg(path)
        .args(arguments)
        .env("RUST_LOG", "off")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_shards_topics_and_layout() {
    let output = run(VALID, &["--check"]);
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    for expected in [
        "broker.toml: valid",
        "broker broker-a (broker_id 0, master) in cluster main",
        "shard 0: unpinned, /var/lib/spillway/shard-0, 2 configured queues",
        "shard 1: unpinned, /var/lib/spillway/shard-1, 4 configured queues",
        "orders: 4 queues, round-robin",
        "payments: 2 queues, 1 pinned, the rest round-robin",
        "    shard 1: queues 0-1",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing from\n{stdout}"
        );
    }
}

#[test]
fn invalid_config_is_one_line_naming_the_key_and_exits_2() {
    let config = VALID.replace("queues = 4", "queues = 2000");
    let output = run(&config, &["--check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("topics[0].queues: 2000 queues is outside 1 to 1024"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn unreadable_config_exits_2() {
    let output = run_with_path(Path::new("/nonexistent/broker.toml"), &["--check"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read the config file /nonexistent/broker.toml"));
}

#[test]
fn a_taken_port_is_one_plain_line_and_exit_status_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    let config = VALID.replace("127.0.0.1:10911", &address.to_string());
    let output = run(&config, &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
