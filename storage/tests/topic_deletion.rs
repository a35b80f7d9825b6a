//! Deleting a topic: its queues start again at offset 0, its old records are never read
//! again, and that holds after a clean reopen, after a crash whose recovery scan meets the
//! tombstone, and after a full rebuild of every index from the log. Other topics keep
//! everything.

mod common;

use common::{body_of, crash_and_reopen, data_dir, encode, read_all, run, small_config};
use spillway_storage::{FlushMode, QueueId, ShardStore, StorageConfig};

const GONE: &str = "gone";
const KEPT: &str = "kept";

/// Appends messages numbered `numbers` (bodies `body_of(queue, n)`) one per batch and
/// checks they land at consecutive offsets from `first_offset`.
async fn append(
    store: &ShardStore,
    topic: &str,
    queue: u32,
    numbers: std::ops::Range<u64>,
    first_offset: u64,
) {
    for (i, n) in numbers.enumerate() {
        let mut batch = Vec::new();
        encode(topic, "t", &body_of(queue, n), &mut batch);
        let outcome = store.append(topic, QueueId(queue), &batch).await.unwrap();
        assert_eq!(outcome.first_offset.0, first_offset + i as u64);
    }
}

/// Checks what a reader sees: the deleted topic's queue 0 holds only the messages appended
/// after the deletion (numbered from 1000) and its queue 1 does not exist; the other
/// topic holds all it had.
async fn check(store: &ShardStore) {
    let gone = read_all(store, GONE, QueueId(0), 0).await;
    let expected: Vec<(u64, Vec<u8>)> = (0..5).map(|n| (n, body_of(0, 1000 + n))).collect();
    let offsets: Vec<u64> = gone.iter().map(|(offset, _)| *offset).take(10).collect();
    assert!(
        gone == expected,
        "the deleted topic's queue 0 holds {} messages (offsets {offsets:?}...), not the 5 \
         appended after the deletion",
        gone.len()
    );
    let queues = store.queues();
    assert!(
        !queues.contains(&(GONE.to_owned(), QueueId(1))),
        "{queues:?}"
    );
    let kept = read_all(store, KEPT, QueueId(0), 0).await;
    assert_eq!(kept.len(), 30);
    assert!(kept
        .iter()
        .enumerate()
        .all(|(n, (offset, body))| *offset == n as u64 && body == &body_of(0, n as u64)));
}

fn config(path: &std::path::Path) -> StorageConfig {
    let mut config = small_config(path, FlushMode::Sync);
    // No checkpoint after open: a crash's recovery scans over the tombstone.
    config.checkpoint_interval_ms = 3_600_000;
    config
}

#[test]
fn a_deleted_topic_starts_again_at_zero_across_reopen_crash_and_rebuild() {
    let dir = data_dir("topic-deletion");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(config(&path)).await.unwrap();
        // Enough to roll the tiny segments several times.
        append(&store, GONE, 0, 0..200, 0).await;
        append(&store, GONE, 1, 0..50, 0).await;
        append(&store, KEPT, 0, 0..30, 0).await;
        assert_eq!(store.delete_topic(GONE).await.unwrap(), 2);
        assert_eq!(store.delete_topic(GONE).await.unwrap(), 0);
        // The queue starts again at offset 0.
        append(&store, GONE, 0, 1000..1005, 0).await;
        check(&store).await;

        // A crash: the store goes without closing (no clean checkpoint); every append
        // above was durable (flush = sync) when it returned. Then a clean reopen.
        crash_and_reopen(
            store,
            || config(&path),
            |store| async {
                check(&store).await;
                store
            },
        )
        .await;

        // Every index rebuilt from the log: the old records of the topic come before its
        // tombstone.
        std::fs::remove_dir_all(path.join("shard-0/index")).unwrap();
        let store = ShardStore::open(config(&path)).await.unwrap();
        assert!(store.recovery_report().full_rebuild);
        check(&store).await;
        store.close().await.unwrap();
    });
}

#[test]
fn a_leftover_renamed_index_is_swept_at_open() {
    let dir = data_dir("topic-deletion-sweep");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(config(&path)).await.unwrap();
        append(&store, KEPT, 0, 0..30, 0).await;
        store.close().await.unwrap();
        let leftover = path.join("shard-0/index").join(GONE).join("0.idx.deleted");
        std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
        std::fs::write(&leftover, b"old entries").unwrap();
        let store = ShardStore::open(config(&path)).await.unwrap();
        assert!(!leftover.exists());
        assert_eq!(read_all(&store, KEPT, QueueId(0), 0).await.len(), 30);
        store.close().await.unwrap();
    });
}
