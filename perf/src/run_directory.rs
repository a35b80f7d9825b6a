//! `RunDirectory`: the fresh directory one benchmark run writes into, under the `--dir` the
//! user gave, and removed when the run ends (also when it fails).
//!
//! It refuses a directory on tmpfs or ramfs up front: those have no disk behind them, so a
//! storage benchmark there would measure memory copies. It never touches anything outside
//! the subdirectory it created.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::PerfError;

/// `f_type` of tmpfs in `statfs(2)`.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `f_type` of ramfs in `statfs(2)`.
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Name of the file system holding `path`, as far as the benchmark cares.
pub fn file_system_name(path: &Path) -> Result<&'static str, PerfError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        PerfError::io(
            "statfs",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains a NUL byte"),
        )
    })?;
    // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `stats` a valid out-pointer; both live
    // across the call.
    let status = unsafe { libc::statfs(c_path.as_ptr(), &mut stats) };
    if status != 0 {
        return Err(PerfError::io(
            "statfs",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::unnecessary_cast)] // f_type's integer type differs between targets
    let name = match stats.f_type as i64 {
        TMPFS_MAGIC => "tmpfs",
        RAMFS_MAGIC => "ramfs",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x2fc1_2fc1 => "zfs",
        0x794c_7630 => "overlayfs",
        _ => "unknown",
    };
    Ok(name)
}

/// A directory created for one run, removed by [`RunDirectory::remove`] or on drop.
#[derive(Debug)]
pub struct RunDirectory {
    path: PathBuf,
    removed: bool,
}

impl RunDirectory {
    /// Checks that `parent` is a directory on a disk file system and creates a fresh,
    /// uniquely named subdirectory in it.
    pub fn create(parent: &Path) -> Result<Self, PerfError> {
        let metadata = std::fs::metadata(parent)
            .map_err(|source| PerfError::io("reading metadata of", parent, source))?;
        if !metadata.is_dir() {
            return Err(PerfError::Usage {
                reason: format!("--dir {} is not a directory", parent.display()),
            });
        }
        if matches!(file_system_name(parent)?, "tmpfs" | "ramfs") {
            return Err(PerfError::Tmpfs {
                path: parent.to_path_buf(),
            });
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since_epoch| since_epoch.as_nanos())
            .unwrap_or(0);
        let path = parent.join(format!("spillway-perf-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .map_err(|source| PerfError::io("creating run directory", &path, source))?;
        tracing::debug!(path = %path.display(), "created run directory");
        Ok(RunDirectory {
            path,
            removed: false,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory and everything in it, reporting a failure.
    pub fn remove(mut self) -> Result<(), PerfError> {
        self.removed = true;
        std::fs::remove_dir_all(&self.path)
            .map_err(|source| PerfError::io("removing run directory", &self.path, source))
    }
}

impl Drop for RunDirectory {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove run directory");
        }
    }
}

/// A fresh directory for a test that needs a disk (O_DIRECT): under the workspace's
/// `target/tmp` (not `/tmp`, which may be tmpfs), removed when dropped.
#[cfg(test)]
pub fn disk_test_dir(prefix: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
    std::fs::create_dir_all(&base).expect("create target/tmp");
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("create a test directory under target/tmp");
    let file_system = file_system_name(dir.path()).expect("statfs target/tmp");
    assert!(
        !matches!(file_system, "tmpfs" | "ramfs"),
        "target/tmp is on {file_system}, which refuses O_DIRECT"
    );
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_directory_is_fresh_and_removed_with_its_contents() {
        let parent = tempfile::tempdir().unwrap();
        let run_directory = match RunDirectory::create(parent.path()) {
            Ok(run_directory) => run_directory,
            Err(PerfError::Tmpfs { .. }) => return eprintln!("skipping: temp dir on tmpfs"),
            Err(error) => panic!("{error}"),
        };
        let path = run_directory.path().to_path_buf();
        assert!(path.starts_with(parent.path()));
        std::fs::write(path.join("file"), b"x").unwrap();
        run_directory.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn dropping_removes_the_directory_too() {
        let parent = tempfile::tempdir().unwrap();
        let run_directory = match RunDirectory::create(parent.path()) {
            Ok(run_directory) => run_directory,
            Err(PerfError::Tmpfs { .. }) => return eprintln!("skipping: temp dir on tmpfs"),
            Err(error) => panic!("{error}"),
        };
        let path = run_directory.path().to_path_buf();
        drop(run_directory);
        assert!(!path.exists());
    }

    #[test]
    fn a_file_is_not_a_run_directory_parent() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            RunDirectory::create(&file),
            Err(PerfError::Usage { .. })
        ));
    }

    #[test]
    fn tmpfs_is_refused() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() || file_system_name(shm).unwrap() != "tmpfs" {
            eprintln!("skipping: no tmpfs at /dev/shm");
            return;
        }
        assert!(matches!(
            RunDirectory::create(shm),
            Err(PerfError::Tmpfs { .. })
        ));
    }
}
