//! The next segment is created ahead of the roll: the roll then finds its file ready, a
//! clean shutdown removes it unused (a clean restart continues in the current segment), and
//! after a crash recovery continues at its start with every acknowledged record intact.
//! While the log idles the prepared segment is zero-filled (its blocks become written ones,
//! as the file system's extent map shows), and a roll never lets zeros land on records.

mod common;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{body_of, check_queue, data_dir, encode, run, small_config};
use spillway_storage::{FlushMode, QueueId, ShardStore, StorageConfig};

const TOPIC: &str = "roll";

fn config(path: &Path) -> StorageConfig {
    small_config(path, FlushMode::Sync)
}

fn segment_path(path: &Path, start: u64) -> PathBuf {
    path.join(format!("shard-0/commitlog/{start:020}.log"))
}

/// Appends messages numbered from `first` until the log passes `until`; returns the next
/// message number and the log's end.
async fn append_until(store: &ShardStore, first: u64, until: u64) -> (u64, u64) {
    let mut n = first;
    loop {
        let mut batch = Vec::new();
        encode(TOPIC, "t", &body_of(0, n), &mut batch);
        let outcome = store.append(TOPIC, QueueId(0), &batch).await.unwrap();
        assert_eq!(outcome.first_offset.0, n);
        n += 1;
        if outcome.end_position.0 > until {
            return (n, outcome.end_position.0);
        }
    }
}

/// Waits, at most 10 s, until the store has created the next segment ahead of its roll.
async fn wait_for_next_segment(store: &ShardStore) {
    glommio::timer::timeout(Duration::from_secs(10), async {
        store.next_segment_settled().await;
        Ok(())
    })
    .await
    .expect("the next segment was not created within 10 s of passing the middle");
    assert_eq!(
        store.log_stats().segments_created_ahead,
        1,
        "{:?}",
        store.log_stats()
    );
}

async fn check_messages(store: &ShardStore, count: u64) {
    check_queue(store, TOPIC, QueueId(0), count).await;
}

#[test]
fn the_roll_finds_the_next_segment_ready() {
    let dir = data_dir("next-segment-roll");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = config(&path);
        let segment = config.segment_size_bytes;
        let store = ShardStore::open(config).await.unwrap();
        assert!(!segment_path(&path, segment).exists());
        let (next, _) = append_until(&store, 0, segment / 2).await;
        wait_for_next_segment(&store).await;
        assert!(
            segment_path(&path, segment).exists(),
            "the next segment's file exists before the log reaches it"
        );
        let (next, end) = append_until(&store, next, segment + 100).await;
        assert!(end > segment, "the log rolled into the second segment");
        let stats = store.log_stats();
        assert_eq!(
            stats.segments_created_at_roll, 0,
            "the roll created a file itself: {stats:?}"
        );
        check_messages(&store, next).await;
        store.close().await.unwrap();
    });
}

#[test]
fn a_clean_shutdown_removes_an_unused_next_segment() {
    let dir = data_dir("next-segment-close");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let segment = config(&path).segment_size_bytes;
        let store = ShardStore::open(config(&path)).await.unwrap();
        let (next, end) = append_until(&store, 0, segment / 2).await;
        wait_for_next_segment(&store).await;
        store.close().await.unwrap();
        assert!(
            !segment_path(&path, segment).exists(),
            "an unused next segment outlived a clean shutdown"
        );

        let store = ShardStore::open(config(&path)).await.unwrap();
        assert!(store.recovery_report().clean_shutdown);
        assert_eq!(store.recovery_report().log_end.0, end);
        // The log goes on in the first segment, right where it was.
        let mut batch = Vec::new();
        encode(TOPIC, "t", &body_of(0, next), &mut batch);
        let outcome = store.append(TOPIC, QueueId(0), &batch).await.unwrap();
        assert_eq!(outcome.first_position.0, end);
        check_messages(&store, next + 1).await;
        store.close().await.unwrap();
    });
}

#[test]
fn a_close_while_the_next_segment_is_created_finishes() {
    let dir = data_dir("next-segment-close-racing");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let segment = config(&path).segment_size_bytes;
        let store = ShardStore::open(config(&path)).await.unwrap();
        // The append past the middle asks for the next segment; the close comes at once,
        // most likely while the file is being created.
        let (next, end) = append_until(&store, 0, segment / 2).await;
        let closed =
            glommio::timer::timeout(Duration::from_secs(30), async { Ok(store.close().await) })
                .await;
        closed
            .expect("close did not finish within 30 s: the next segment's task missed it")
            .unwrap();
        assert!(!segment_path(&path, segment).exists());

        let store = ShardStore::open(config(&path)).await.unwrap();
        assert!(store.recovery_report().clean_shutdown);
        assert_eq!(store.recovery_report().log_end.0, end);
        check_messages(&store, next).await;
        store.close().await.unwrap();
    });
}

#[test]
fn after_a_crash_the_log_continues_in_the_prepared_segment() {
    let dir = data_dir("next-segment-crash");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let segment = config(&path).segment_size_bytes;
        let store = ShardStore::open(config(&path)).await.unwrap();
        let (next, _) = append_until(&store, 0, segment / 2).await;
        wait_for_next_segment(&store).await;
        // A crash: no close, so the prepared segment stays; every append above was
        // acknowledged after an fdatasync.
        store.halt();
        assert!(segment_path(&path, segment).exists());

        let store = ShardStore::open(config(&path)).await.unwrap();
        assert!(!store.recovery_report().clean_shutdown);
        check_messages(&store, next).await;
        // The empty segment reads as never written: the log continues at its start, as
        // after a roll.
        let (after, _) = append_until(&store, next, 0).await;
        assert_eq!(store.recovery_report().log_end.0, segment);
        store.close().await.unwrap();

        let store = ShardStore::open(config(&path)).await.unwrap();
        assert!(store.recovery_report().clean_shutdown);
        check_messages(&store, after).await;
        store.close().await.unwrap();
    });
}

/// Bytes of `path` the file system maps as *unwritten* extents (allocated by `fallocate`,
/// never written), from the FIEMAP ioctl.
fn unwritten_bytes(path: &Path) -> u64 {
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct ExtentMap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; 32],
    }
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_LAST: u32 = 1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;

    let file = std::fs::File::open(path).unwrap();
    let mut unwritten = 0;
    let mut start = 0;
    loop {
        let mut map = ExtentMap {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: 32,
            reserved: 0,
            extents: [Extent::default(); 32],
        };
        // SAFETY: FIEMAP fills at most `extent_count` extents of the struct we own.
        let status = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut map) };
        assert_eq!(status, 0, "FIEMAP: {}", std::io::Error::last_os_error());
        let extents = &map.extents[..map.mapped_extents as usize];
        for extent in extents {
            if extent.flags & FIEMAP_EXTENT_UNWRITTEN != 0 {
                unwritten += extent.length;
            }
        }
        match extents.last() {
            Some(last) if last.flags & FIEMAP_EXTENT_LAST == 0 => {
                start = last.logical + last.length;
            }
            _ => return unwritten,
        }
    }
}

/// Waits, at most 10 s, until the prepared next segment is zero-filled whole.
async fn wait_for_zero_fill(store: &ShardStore) {
    glommio::timer::timeout(Duration::from_secs(10), async {
        store.zero_fill_settled().await;
        Ok(())
    })
    .await
    .expect("the next segment was not zero-filled within 10 s of the log idling");
}

#[test]
fn an_idle_log_zero_fills_the_prepared_segment() {
    let dir = data_dir("next-segment-zero-fill");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let segment = config(&path).segment_size_bytes;
        let store = ShardStore::open(config(&path)).await.unwrap();
        let (next, _) = append_until(&store, 0, segment / 2).await;
        wait_for_next_segment(&store).await;
        wait_for_zero_fill(&store).await;
        assert_eq!(store.log_stats().bytes_zero_filled, segment);
        assert_eq!(
            unwritten_bytes(&segment_path(&path, segment)),
            0,
            "the zero-filled segment still has unwritten extents"
        );
        // The log rolls into it and reads back whole, before and after a restart.
        let (next, _) = append_until(&store, next, segment + segment / 4).await;
        check_messages(&store, next).await;
        store.close().await.unwrap();
        let store = ShardStore::open(config(&path)).await.unwrap();
        check_messages(&store, next).await;
        store.close().await.unwrap();
    });
}

#[test]
fn with_zero_fill_off_the_prepared_segment_stays_unwritten() {
    let dir = data_dir("next-segment-no-zero-fill");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let mut config = config(&path);
        config.zero_fill_segments = false;
        let segment = config.segment_size_bytes;
        let store = ShardStore::open(config).await.unwrap();
        append_until(&store, 0, segment / 2).await;
        wait_for_next_segment(&store).await;
        assert_eq!(store.log_stats().bytes_zero_filled, 0);
        assert_eq!(
            unwritten_bytes(&segment_path(&path, segment)),
            segment,
            "fallocate left written blocks: this file system cannot show what zero-filling does"
        );
        store.close().await.unwrap();
    });
}

#[test]
fn a_roll_during_a_zero_write_waits_for_it() {
    let dir = data_dir("next-segment-zero-fill-roll");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = config(&path);
        let segment = config.segment_size_bytes;
        let store = ShardStore::open(config.clone()).await.unwrap();
        let (mut next, mut end) = (0, 0);
        // Each round: pass the middle of the current segment and let the next one be
        // created; once the zero-filler has issued its write there (the log being idle),
        // append one batch that fills more than a write buffer in that segment, so that
        // the writer wants to write there before the zero write's completion is seen.
        for round in 1..=20 {
            let current = end / segment * segment;
            (next, end) = append_until(&store, next, current + segment / 2).await;
            let mut batch = Vec::new();
            let first = next;
            let crossing = current + segment - end + 3 * segment / 4;
            while (batch.len() as u64) < crossing {
                encode(TOPIC, "t", &body_of(0, next), &mut batch);
                next += 1;
            }
            store.next_segment_settled().await;
            // The zero-filler wakes with the same notification; give it its turn.
            for _ in 0..100 {
                let stats = store.log_stats();
                if stats.zero_writes_issued > stats.zero_writes_completed {
                    break;
                }
                futures_lite::future::yield_now().await;
            }
            let outcome = store.append(TOPIC, QueueId(0), &batch).await.unwrap();
            assert_eq!(outcome.first_offset.0, first);
            end = outcome.end_position.0;
            assert!(end > current + segment, "round {round} rolled");
            if store.log_stats().writes_held_for_zero_fill > 0 {
                break;
            }
        }
        assert!(
            store.log_stats().writes_held_for_zero_fill > 0,
            "no roll met a zero write in flight in 20 tries: {:?}",
            store.log_stats()
        );
        check_messages(&store, next).await;
        // A crash, then recovery from the disk alone: every record is intact.
        store.halt();
        let store = ShardStore::open(config).await.unwrap();
        check_messages(&store, next).await;
        store.close().await.unwrap();
    });
}
