//! [`LocalCluster`] against the real `spillway-perf` binary: it starts a name server and a
//! broker as child processes (through the hidden `serve-*` subcommands), both serve, and
//! stopping or dropping the cluster ends them and removes its directory.
//!
//! The test executable is not `spillway-perf`, so the tests pass the binary cargo built
//! (`CARGO_BIN_EXE_spillway-perf`), and create the cluster under cargo's target tmp
//! directory, which is on the build's disk (the commit log needs O_DIRECT).

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use spillway_perf::local_cluster::{LocalCluster, LocalClusterOptions, DIRECTORY_PREFIX};
use spillway_perf::LoadError;

/// A connect attempt's limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options with a parent directory of this test's own: tests run in parallel and count the
/// cluster directories they leave, so they must not see each other's.
fn options(test: &str) -> LocalClusterOptions {
    let parent = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("perf-local-cluster")
        .join(test);
    std::fs::create_dir_all(&parent).unwrap();
    LocalClusterOptions {
        executable: Some(PathBuf::from(env!("CARGO_BIN_EXE_spillway-perf"))),
        parent_dir: parent,
        segment_size_bytes: 16 << 20,
        ..LocalClusterOptions::default()
    }
}

/// How long a killed server's listening socket may outlive the process: glommio's
/// io_uring holds a reference to it, and the kernel tears a ring down asynchronously after
/// the process is reaped.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

fn connects(address: SocketAddr) -> bool {
    TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok()
}

/// Whether connections to `address` are refused within [`CLOSE_DEADLINE`].
fn stops_accepting(address: SocketAddr) -> bool {
    spillway_tests::wait::poll_within(CLOSE_DEADLINE, || (!connects(address)).then_some(()))
        .is_some()
}

fn cluster_directories(parent: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(DIRECTORY_PREFIX))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn local_cluster_serves_until_stopped_and_then_removes_its_directory() {
    let options = options("local_cluster_serves_until_stopped_and_then_removes_its_directory");
    let parent = std::fs::canonicalize(&options.parent_dir).unwrap();
    let mut cluster = LocalCluster::start(options).unwrap();

    let directory = cluster.directory().to_owned();
    assert!(directory.starts_with(&parent), "{}", directory.display());
    for address in [cluster.broker_address(), cluster.name_server_address()] {
        assert!(address.ip().is_loopback(), "{address}");
        assert_ne!(address.port(), 0);
        assert!(connects(address), "cannot connect to {address}");
    }
    assert_ne!(cluster.broker_address(), cluster.name_server_address());
    for shard in ["shard-0", "shard-1"] {
        assert!(directory.join("data").join(shard).is_dir(), "no {shard}");
    }
    assert!(directory.join("broker.log").is_file());
    assert!(directory.join("nameserver.log").is_file());
    assert_eq!(cluster.topic(), "spillway-perf");
    assert_eq!(cluster.queue_count(), 8);
    cluster.check_running().unwrap();

    let broker = cluster.broker_address();
    cluster.stop().unwrap();
    assert!(
        !directory.exists(),
        "{} is still there",
        directory.display()
    );
    assert!(
        stops_accepting(broker),
        "the broker still accepts connections"
    );
}

#[test]
fn dropping_a_cluster_kills_its_servers_and_removes_its_directory() {
    let cluster = LocalCluster::start(options(
        "dropping_a_cluster_kills_its_servers_and_removes_its_directory",
    ))
    .unwrap();
    let directory = cluster.directory().to_owned();
    let (broker, name_server) = (cluster.broker_address(), cluster.name_server_address());
    drop(cluster);
    assert!(
        !directory.exists(),
        "{} is still there",
        directory.display()
    );
    assert!(stops_accepting(broker), "the broker survived");
    assert!(stops_accepting(name_server), "the name server survived");
}

#[test]
fn a_data_directory_on_tmpfs_serves_or_is_refused_in_the_brokers_words() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipping: no /dev/shm");
        return;
    }
    let before = cluster_directories(shm);
    let result = LocalCluster::start(LocalClusterOptions {
        parent_dir: shm.to_owned(),
        ..options("a_data_directory_on_tmpfs_serves_or_is_refused_in_the_brokers_words")
    });
    match result {
        Err(LoadError::DirectIoUnsupported { data_dir, line }) => {
            assert!(data_dir.starts_with(shm), "{}", data_dir.display());
            assert!(line.contains("O_DIRECT is not supported"), "{line}");
            let message = LoadError::DirectIoUnsupported { data_dir, line }.to_string();
            assert!(message.contains("--data-dir"), "{message}");
        }
        Ok(cluster) => {
            // Recent kernels let tmpfs take O_DIRECT: then the broker runs there, and
            // `a_broker_refusing_o_direct_is_reported_with_its_own_words` covers the path.
            eprintln!("/dev/shm takes O_DIRECT here; nothing to check");
            cluster.stop().unwrap();
        }
        Err(other) => panic!("expected DirectIoUnsupported, got: {other}"),
    }
    assert_eq!(
        cluster_directories(shm),
        before,
        "a failed start leaves nothing behind"
    );
}

#[test]
fn a_broker_refusing_o_direct_is_reported_with_its_own_words() {
    // Recent kernels let tmpfs take O_DIRECT, so the refusal is staged: a wrapper runs the
    // real name server, and for `serve-broker` prints what the storage engine says about
    // such a file system (StorageError::DirectIoUnsupported) and exits 1, as the broker
    // does.
    let scratch = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let wrapper = scratch.path().join("spillway-perf-refusing-o-direct");
    let script = format!(
        "#!/bin/sh\n\
         if [ \"$1\" = serve-broker ]; then\n\
         echo 'INFO opening shard 0' >&2\n\
         echo 'spillway-perf serve-broker: shard 0: O_DIRECT is not supported for \
         /x/data/shard-0/.direct-io-probe (tmpfs and some network file systems refuse it)' >&2\n\
         exit 1\n\
         fi\n\
         exec '{}' \"$@\"\n",
        env!("CARGO_BIN_EXE_spillway-perf")
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A child another test thread forked while the script was open for writing holds that
    // descriptor until its exec, and running the script meanwhile fails with ETXTBSY: wait
    // until it runs.
    // A just-written script can be busy (ETXTBSY) while another test's fork still holds
    // its write descriptor: ask again until it runs.
    let output = spillway_tests::wait::poll_until("running the wrapper", CLOSE_DEADLINE, || {
        match std::process::Command::new(&wrapper)
            .arg("--version")
            .output()
        {
            Ok(output) => Some(output),
            Err(error) if error.raw_os_error() == Some(libc::ETXTBSY) => None,
            Err(error) => panic!("cannot run {}: {error}", wrapper.display()),
        }
    });
    assert!(output.status.success(), "{output:?}");
    let options = LocalClusterOptions {
        executable: Some(wrapper),
        ..options("a_broker_refusing_o_direct_is_reported_with_its_own_words")
    };
    let before = cluster_directories(&options.parent_dir);
    match LocalCluster::start(options.clone()) {
        Err(LoadError::DirectIoUnsupported { data_dir, line }) => {
            assert!(data_dir.ends_with("data"), "{}", data_dir.display());
            assert!(
                line.starts_with("spillway-perf serve-broker: shard 0: O_DIRECT is not supported"),
                "{line}"
            );
        }
        Err(other) => panic!("expected DirectIoUnsupported, got: {other}"),
        Ok(_) => panic!("the staged broker cannot start"),
    }
    assert_eq!(
        cluster_directories(&options.parent_dir),
        before,
        "a failed start leaves nothing behind"
    );
}

#[test]
fn options_the_broker_refuses_fail_before_any_process_starts() {
    let options = LocalClusterOptions {
        segment_size_bytes: 1_000,
        ..options("options_the_broker_refuses_fail_before_any_process_starts")
    };
    let before = cluster_directories(&options.parent_dir);
    let error = LocalCluster::start(options.clone()).unwrap_err();
    assert!(
        matches!(error, LoadError::ClusterOptions { .. }),
        "expected ClusterOptions, got: {error}"
    );
    assert_eq!(cluster_directories(&options.parent_dir), before);
}
