//! Index entries written between checkpoints (`ShardStore::write_indexes`, run every
//! `INDEX_WRITE_INTERVAL` by the store): they land in the index files without a
//! checkpoint, the store lets go of them in memory yet still reads them, and a crash
//! before the next checkpoint recovers the same queue.

mod common;

use std::path::Path;

use common::{body_of, check_queue, crash_and_reopen, data_dir, encode, run, small_config};
use spillway_storage::{FlushMode, QueueId, ShardStore, StorageConfig};

const TOPIC: &str = "indexed";
/// Well past the entries a queue keeps in memory once they are in the file (1024).
const RECORDS: u64 = 5_000;
/// Bytes per index entry.
const ENTRY_BYTES: u64 = 32;

fn config(path: &Path) -> StorageConfig {
    let mut config = small_config(path, FlushMode::Sync);
    // No checkpoint during the test.
    config.checkpoint_interval_ms = 3_600_000;
    config
}

fn index_file_len(path: &Path) -> u64 {
    std::fs::metadata(path.join(format!("shard-0/index/{TOPIC}/0.idx")))
        .map(|metadata| metadata.len())
        .unwrap_or(0)
}

async fn check(store: &ShardStore) {
    check_queue(store, TOPIC, QueueId(0), RECORDS).await;
}

#[test]
fn entries_written_between_checkpoints_are_in_the_file_and_still_read() {
    let dir = data_dir("index-writes");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(config(&path)).await.unwrap();
        let mut batch = Vec::new();
        for n in 0..RECORDS {
            batch.clear();
            encode(TOPIC, "t", &body_of(0, n), &mut batch);
            store.append(TOPIC, QueueId(0), &batch).await.unwrap();
        }
        // (The store's own pass every 100 ms may have written some already.)
        store.write_indexes().await.unwrap();
        let written = index_file_len(&path);
        assert!(
            written >= RECORDS * ENTRY_BYTES,
            "index file {written} bytes for {RECORDS} entries, no checkpoint taken"
        );
        // Most entries now come back from the file, not from memory.
        check(&store).await;
        // Nothing new: a second pass writes nothing and fails nothing.
        store.write_indexes().await.unwrap();

        // A crash before any checkpoint named those entries: recovery scans the log and
        // finds the same queue.
        crash_and_reopen(
            store,
            || config(&path),
            |store| async {
                check(&store).await;
                store
            },
        )
        .await;
    });
}
