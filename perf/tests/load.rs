//! The load subcommands as a user runs them, against real processes: `quickstart` runs and
//! exits 0; `produce --ledger` then `verify` is clean, and `verify` catches a loss — a
//! ledger claiming an acknowledgement the broker never gave — and exits non-zero.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spillway_perf::ledger::{Acknowledged, Ledger, LedgerWriter};
use spillway_perf::local_cluster::{LocalCluster, LocalClusterOptions};
use spillway_perf::message_body::MessageId;
use spillway_wire::{QueueId, QueueOffset};

fn perf() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spillway-perf"));
    command.env("RUST_LOG", "warn");
    command
}

fn scratch(name: &str) -> PathBuf {
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&directory).unwrap();
    directory
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn quickstart_runs_a_short_load_and_exits_0() {
    let data_dir = scratch("perf-quickstart");
    let output = perf()
        .args(["quickstart", "--duration", "2", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let report = text(&output);
    assert!(output.status.success(), "{report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("spillway-perf produce:"), "{report}");
    assert!(stdout.contains("spillway-perf e2e:"), "{report}");
    assert!(stdout.contains("p99.99"), "{report}");
    // The temporary cluster directory is gone.
    let left: Vec<_> = std::fs::read_dir(&data_dir).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Copies `ledger` to `path` with one more acknowledgement: a message at an offset the
/// queue never reached.
fn ledger_with_a_phantom(ledger: &Ledger, path: &Path) {
    let writer = LedgerWriter::create(path).unwrap();
    let entries: Vec<Acknowledged<'_>> = ledger
        .entries()
        .iter()
        .map(|entry| Acknowledged {
            id: entry.id,
            broker_name: ledger.broker_name(entry.broker_index).unwrap(),
            queue_id: entry.queue_id,
            queue_offset: entry.queue_offset,
            body_crc: entry.body_crc,
        })
        .collect();
    writer.record_all(&entries).unwrap();
    writer
        .record(&Acknowledged {
            id: MessageId::new(999, 0),
            broker_name: ledger.brokers()[0].as_str(),
            queue_id: QueueId(0),
            queue_offset: QueueOffset(1_000_000),
            body_crc: 0,
        })
        .unwrap();
    writer.finish().unwrap();
}

#[test]
fn verify_is_clean_after_produce_and_catches_a_claimed_but_missing_message() {
    let directory = scratch("perf-verify");
    let cluster = LocalCluster::start(LocalClusterOptions {
        executable: Some(PathBuf::from(env!("CARGO_BIN_EXE_spillway-perf"))),
        parent_dir: directory.clone(),
        segment_size_bytes: 16 << 20,
        ..LocalClusterOptions::default()
    })
    .unwrap();
    let name_server = cluster.name_server_address().to_string();
    let ledger_path = directory.join("acknowledged.ledger");
    let produced = perf()
        .args([
            "produce",
            "--name-server",
            &name_server,
            "--messages",
            "3000",
        ])
        .args(["--message-size", "200", "--ledger"])
        .arg(&ledger_path)
        .output()
        .unwrap();
    assert!(produced.status.success(), "{}", text(&produced));
    let ledger = Ledger::read(&ledger_path).unwrap();
    assert_eq!(ledger.entries().len(), 3000);

    let verified = perf()
        .args(["verify", "--name-server", &name_server, "--ledger"])
        .arg(&ledger_path)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("verify: clean: 3000 acknowledged"),
        "{}",
        text(&verified)
    );

    let phantom_path = directory.join("phantom.ledger");
    ledger_with_a_phantom(&ledger, &phantom_path);
    let caught = perf()
        .args(["verify", "--name-server", &name_server, "--ledger"])
        .arg(&phantom_path)
        .output()
        .unwrap();
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught));
    let stdout = String::from_utf8_lossy(&caught.stdout);
    assert!(stdout.contains("FAILED"), "{}", text(&caught));
    assert!(stdout.contains("1 lost"), "{}", text(&caught));
    assert!(stdout.contains("lost 999:0"), "{}", text(&caught));

    // With a warm-up, the ledger has every acknowledged message and the summary only those
    // sent after the warm-up: two fifths of them at a steady rate (1.5 s, then 1 s).
    let warm_ledger = directory.join("warm.ledger");
    let summary_path = directory.join("warm.json");
    let warmed = perf()
        .args(["produce", "--name-server", &name_server, "--producers", "1"])
        .args(["--rate", "2000", "--warmup", "1.5", "--duration", "1"])
        .args(["--message-size", "200", "--ledger"])
        .arg(&warm_ledger)
        .arg("--json")
        .arg(&summary_path)
        .output()
        .unwrap();
    assert!(warmed.status.success(), "{}", text(&warmed));
    assert!(
        String::from_utf8_lossy(&warmed.stderr).contains("warm-up (not measured)"),
        "{}",
        text(&warmed)
    );
    let acknowledged = Ledger::read(&warm_ledger).unwrap().entries().len() as u64;
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    let measured = summary["messages"].as_u64().unwrap();
    assert!(
        measured > 0 && measured * 4 < acknowledged * 3,
        "{measured} measured of {acknowledged} acknowledged: the warm-up's are not left out"
    );
    cluster.stop().unwrap();
}
