//! The hidden `serve-broker` and `serve-nameserver` subcommands exit as the servers'
//! own binaries do: 2 for a refused configuration. (Serving and stopping with 0 is covered
//! by `local_cluster.rs`.)

use std::process::Command;

fn spillway_perf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spillway-perf"))
}

#[test]
fn serve_broker_refuses_a_missing_or_invalid_config_with_status_2() {
    let output = spillway_perf()
        .args(["serve-broker", "--config", "/nonexistent/broker.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/broker.toml"), "{stderr}");

    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("broker.toml");
    std::fs::write(
        &config,
        "cluster = \"c\"\nbroker_name = \"b\"\nname_servers = []\n",
    )
    .unwrap();
    let output = spillway_perf()
        .arg("serve-broker")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid config"), "{stderr}");
}

#[test]
fn serve_nameserver_refuses_an_invalid_setting_with_status_2() {
    let output = spillway_perf()
        .args([
            "serve-nameserver",
            "--listen",
            "127.0.0.1:0",
            "--scan-interval-ms",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("scan_interval_ms"), "{stderr}");
}
