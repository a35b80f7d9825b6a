//! Retention: deleting whole segments by age and by disk usage, and refusing appends before
//! the disk is actually full.
//!
//! Only the oldest segments go, in order, so the log stays contiguous; the segment being
//! written is never deleted. After a deletion each queue's minimum offset moves to its first
//! record still stored, and the index blocks below it are punched out of the index file.

use std::os::fd::AsRawFd;

use crate::error::{Result, StorageError};
use crate::ids::LogPosition;
use crate::queue_index::ENTRY_BYTES;
use crate::store::ShardStore;

/// What one retention pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// New start of the log.
    pub log_start: LogPosition,
    /// Disk usage measured last, in percent.
    pub usage_percent: f64,
    /// Whether appends are now refused with `DiskFull`.
    pub disk_full: bool,
}

/// Used space of the file system holding `path`, in percent of the space usable by us
/// (statvfs; the figure `df` prints).
pub fn disk_usage_percent(path: &std::path::Path) -> Result<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        StorageError::io(
            "statvfs",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"),
        )
    })?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(StorageError::io(
            "statvfs",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    // As `df` counts it: used blocks against the blocks we could have, so space reserved
    // for root (or otherwise unavailable to us) counts neither as used nor as room. Taken
    // against all blocks instead, a file system with much of it unavailable (a VM disk
    // here: 252 GB, 60 GB available) looked 76% full with 32 GB used, and retention began
    // deleting at a third of the room actually left.
    let used = stats.f_blocks.saturating_sub(stats.f_bfree) as f64;
    let usable = used + stats.f_bavail as f64;
    if usable == 0.0 {
        return Ok(0.0);
    }
    Ok(used / usable * 100.0)
}

/// Deletes a retired segment file on glommio's blocking thread pool, waiting for it
/// without blocking the executor. Freeing a gigabyte of written extents takes ext4 about
/// 300 ms here, paid by whoever drops the file's last link or descriptor: on the shard's
/// thread that held every append and pull of the shard (a retention pass deleting 24
/// segments held acknowledgements for 6 s). The helper truncates the file first, so the
/// shard's own descriptor closes cheaply afterwards. A read still in flight on the
/// segment gets short data (an error); once this pass moves the queues' minimum offsets
/// past the segment, reads of it are answered `OffsetTooSmall` instead.
async fn delete_off_thread(path: std::path::PathBuf) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || {
            let file = std::fs::OpenOptions::new().write(true).open(&path)?;
            // Shrunk a step at a time: freeing a whole gigabyte in one truncate is one big
            // journal transaction, and every fdatasync of the active segment waits for it.
            let mut length = file.metadata()?.len();
            while length > 0 {
                length = length.saturating_sub(TRUNCATE_STEP_BYTES);
                file.set_len(length)?;
                // Paced, so the journal commits each step on its own between the
                // shard's syncs rather than gathering them into one long commit.
                std::thread::sleep(TRUNCATE_STEP_PAUSE);
            }
            std::fs::remove_file(&path)
        })
        .await
}

/// Where retired segments wait to be freed: `<shard>/commitlog-trash`, beside the log.
pub(crate) fn trash_dir(shard_dir: &std::path::Path) -> std::path::PathBuf {
    shard_dir.join("commitlog-trash")
}

/// Frees what a crash left in the trash (segments retired but not yet freed; the log no
/// longer lists them), before the shard serves: at most one segment per crash, as
/// retention frees one at a time.
pub(crate) async fn empty_trash(shard_dir: &std::path::Path) -> Result<()> {
    let trash = trash_dir(shard_dir);
    let entries =
        std::fs::read_dir(&trash).map_err(|error| StorageError::io("list trash", &trash, error))?;
    for entry in entries {
        let path = entry
            .map_err(|error| StorageError::io("list trash", &trash, error))?
            .path();
        delete_off_thread(path.clone())
            .await
            .map_err(|error| StorageError::io("delete retired segment", &path, error))?;
        tracing::info!(path = %path.display(), "freed a segment retired before a crash");
    }
    Ok(())
}

/// How much of a retired segment one truncate frees.
const TRUNCATE_STEP_BYTES: u64 = 16 << 20;
/// Pause after each step: a gigabyte is freed in about a second and a half.
const TRUNCATE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

impl ShardStore {
    /// One retention pass at `now_ms`. `usage_percent` measures the disk (normally
    /// [`disk_usage_percent`] of the data directory; it is called again after each deletion).
    pub async fn apply_retention(
        &self,
        now_ms: i64,
        usage_percent: &mut dyn FnMut() -> Result<f64>,
    ) -> Result<RetentionReport> {
        let config = &self.inner.config;
        let max_age_ms = config.retention_hours as i64 * 3_600_000;
        let mut report = RetentionReport::default();
        let mut usage = usage_percent()?;
        loop {
            let doomed = {
                let state = self.inner.log.state.borrow();
                let mut sealed = state.segments.values();
                let last = state.current_segment_start();
                match sealed.next() {
                    Some(oldest) if oldest.start != last => {
                        let too_old = oldest.newest_store_timestamp_ms + max_age_ms < now_ms;
                        let too_full = usage > config.disk_high_mark_percent;
                        (too_old || too_full).then_some(oldest.start)
                    }
                    _ => None,
                }
            };
            let Some(start) = doomed else { break };
            let segment = self
                .inner
                .log
                .state
                .borrow_mut()
                .segments
                .remove(&start)
                .expect("segment chosen above");
            // Out of the log at once (a rename, atomic), freed at leisure: a crash while
            // it is being freed leaves a partial file in the trash, never in the log.
            let trash = trash_dir(&self.inner.shard_dir);
            let trashed = trash.join(segment.path.file_name().expect("segment files have names"));
            std::fs::rename(&segment.path, &trashed).map_err(|error| {
                StorageError::io("move segment to the trash", &segment.path, error)
            })?;
            delete_off_thread(trashed.clone())
                .await
                .map_err(|error| StorageError::io("delete segment", &trashed, error))?;
            tracing::info!(shard = config.shard_id.0, path = %segment.path.display(), "retention deleted segment");
            // Only now, with the file empty, does this shard's descriptor close.
            drop(segment);
            report.segments_deleted += 1;
            usage = usage_percent()?;
        }
        if report.segments_deleted > 0 {
            crate::commit_log::sync_directory(&self.inner.log.dir).await?;
        }
        let log_start = {
            let state = self.inner.log.state.borrow();
            *state
                .segments
                .keys()
                .next()
                .expect("the active segment stays")
        };
        report.log_start = LogPosition(log_start);
        if report.segments_deleted > 0 {
            self.advance_min_offsets(LogPosition(log_start)).await?;
        }
        report.usage_percent = usage;
        report.disk_full = usage > config.disk_hard_mark_percent;
        self.inner.disk_full.set(report.disk_full.then_some(usage));
        Ok(report)
    }

    async fn advance_min_offsets(&self, log_start: LogPosition) -> Result<()> {
        let handles = self.all_queue_handles();
        for handle in handles {
            let old_min = handle.borrow().min_offset().0;
            let new_min = self.first_offset_at_or_after(&handle, log_start).await?;
            if new_min <= old_min {
                continue;
            }
            handle.borrow_mut().set_min_offset(new_min);
            // Give the index blocks wholly below the new minimum back to the file system.
            let punch_end = new_min * ENTRY_BYTES / 4096 * 4096;
            let punch_start = old_min * ENTRY_BYTES / 4096 * 4096;
            if punch_end > punch_start {
                let file = handle.borrow().file();
                // SAFETY: plain syscall on a descriptor `file` keeps open.
                let rc = unsafe {
                    libc::fallocate(
                        file.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        punch_start as i64,
                        (punch_end - punch_start) as i64,
                    )
                };
                if rc != 0 {
                    let path = handle.borrow().path().to_path_buf();
                    tracing::warn!(path = %path.display(), error = %std::io::Error::last_os_error(), "could not punch index hole");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_is_the_figure_df_prints() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let output = std::process::Command::new("df")
            .args(["-P", "-k"])
            .arg(dir)
            .output()
            .expect("run df");
        let text = String::from_utf8(output.stdout).unwrap();
        let fields: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        let used: f64 = fields[2].parse().unwrap();
        let available: f64 = fields[3].parse().unwrap();
        let expected = used / (used + available) * 100.0;
        let measured = disk_usage_percent(dir).unwrap();
        assert!(
            (measured - expected).abs() < 0.5,
            "measured {measured:.2}%, df says {expected:.2}% ({used} KiB used, {available} KiB available)"
        );
    }
}
