//! Where the build put things: the `spillway-broker` and `spillway-nameserver` binaries, and
//! the scratch directory for brokers' data.
//!
//! An integration test can only name the binaries of its own package
//! (`CARGO_BIN_EXE_<name>`), so this module finds the servers beside the running test
//! executable: `current_exe()` is `target/<profile>/deps/<test>-<hash>`, and cargo puts a
//! package's binaries in `target/<profile>/`. `cargo test -p spillway-tests` does not build
//! other packages' binaries, so the first test of a process that needs one runs
//! `cargo build -p spillway-broker -p spillway-nameserver` in the same profile. It does so
//! even when the binaries exist (a no-op when they are fresh) so a test never runs a server
//! older than its source; if that build fails while older binaries exist, it warns and uses
//! them, and panics only when there is nothing to run.
//!
//! It never deletes anything but the scratch directories the tests themselves create.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// File name of the broker binary.
pub const BROKER_BINARY_NAME: &str = "spillway-broker";
/// File name of the name server binary.
pub const NAME_SERVER_BINARY_NAME: &str = "spillway-nameserver";

/// The server binaries of the profile the tests were built with.
#[derive(Debug)]
struct Binaries {
    broker: PathBuf,
    name_server: PathBuf,
}

static BINARIES: OnceLock<Binaries> = OnceLock::new();

/// `target/<profile>/`: the directory holding the running test executable's `deps/`.
pub fn profile_directory() -> PathBuf {
    let executable = std::env::current_exe().expect("the path of the running test executable");
    executable
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| {
            panic!(
                "{} is not in target/<profile>/deps/: cannot find the server binaries",
                executable.display()
            )
        })
        .to_path_buf()
}

/// The workspace root (the directory of the root `Cargo.toml`).
pub fn workspace_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

/// Path of the `spillway-broker` binary, built first if needed (once per test process).
pub fn broker_binary() -> &'static Path {
    &binaries().broker
}

/// Path of the `spillway-nameserver` binary, built first if needed (once per test process).
pub fn name_server_binary() -> &'static Path {
    &binaries().name_server
}

/// A directory for brokers' data, under the checkout's target directory
/// (`target/tmp/spillway-tests/`, cargo's `CARGO_TARGET_TMPDIR` for integration tests), so it
/// is on the same file system as the build: the commit log uses O_DIRECT, which tmpfs (often
/// `/tmp`) refuses.
pub fn scratch_directory() -> PathBuf {
    let target = profile_directory()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf();
    let scratch = target.join("tmp").join("spillway-tests");
    std::fs::create_dir_all(&scratch)
        .unwrap_or_else(|error| panic!("create {}: {error}", scratch.display()));
    scratch
}

fn binaries() -> &'static Binaries {
    BINARIES.get_or_init(|| {
        let profile_directory = profile_directory();
        let binaries = Binaries {
            broker: profile_directory.join(BROKER_BINARY_NAME),
            name_server: profile_directory.join(NAME_SERVER_BINARY_NAME),
        };
        build(&profile_directory, &binaries);
        binaries
    })
}

/// Runs `cargo build` for both server packages in the profile of `profile_directory`.
fn build(profile_directory: &Path, binaries: &Binaries) {
    let profile = profile_directory
        .file_name()
        .and_then(|name| name.to_str())
        .expect("a profile directory name");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = workspace_directory();
    let mut command = Command::new(&cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["-p", BROKER_BINARY_NAME, "-p", NAME_SERVER_BINARY_NAME]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    // Build into the same target directory, unless this is a cross-compiled layout
    // (target/<triple>/<profile>), which cargo finds on its own from the environment.
    if let Some(target) = profile_directory.parent() {
        if target.join("CACHEDIR.TAG").exists() {
            command.arg("--target-dir").arg(target);
        }
    }
    eprintln!("spillway-tests: building the servers: {command:?}");
    let outcome = command.output();
    let present = binaries.broker.exists() && binaries.name_server.exists();
    match outcome {
        Ok(output) if output.status.success() => {
            assert!(
                present,
                "`{command:?}` succeeded but did not produce {} and {}",
                binaries.broker.display(),
                binaries.name_server.display()
            );
        }
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            if present {
                eprintln!(
                    "spillway-tests: WARNING: building the servers failed ({}); running the \
                     existing, possibly stale, binaries in {}:\n{stderr}",
                    output.status,
                    profile_directory.display()
                );
            } else {
                panic!(
                    "cannot build the servers with `{command:?}` ({}), and {} or {} is \
                     missing:\n{stderr}",
                    output.status,
                    binaries.broker.display(),
                    binaries.name_server.display()
                );
            }
        }
        Err(error) => {
            assert!(
                present,
                "cannot run {cargo:?} to build the servers ({error}), and {} or {} is missing",
                binaries.broker.display(),
                binaries.name_server.display()
            );
            eprintln!(
                "spillway-tests: WARNING: cannot run {cargo:?} ({error}); running the existing \
                 binaries in {}",
                profile_directory.display()
            );
        }
    }
}
