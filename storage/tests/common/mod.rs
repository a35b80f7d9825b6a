//! Helpers shared by the storage integration tests: an executor to run in, data directories
//! on the checkout's disk (O_DIRECT needs a real file system), small configurations that make
//! segments roll constantly, and record batches that say what they carry.

#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;

use spillway_storage::record::RecordBuilder;
use spillway_storage::{FlushMode, QueueId, QueueOffset, ReadRequest, ShardStore, StorageConfig};

/// Runs `body` to completion on a fresh glommio executor.
pub fn run<F, Fut, T>(body: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(body)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// A fresh directory under cargo's target tmp dir, which is on the checkout's disk.
pub fn data_dir(name: &str) -> tempfile::TempDir {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).expect("create target tmp dir");
    tempfile::Builder::new()
        .prefix(name)
        .tempdir_in(base)
        .expect("create test dir")
}

/// Tiny segments and buffers so every test rolls segments many times.
pub fn small_config(dir: &std::path::Path, flush: FlushMode) -> StorageConfig {
    let mut config = StorageConfig::new(dir);
    config.segment_size_bytes = 128 << 10;
    config.write_buffer_bytes = 64 << 10;
    config.max_record_bytes = 16 << 10;
    config.max_batch_bytes = 1 << 20;
    config.tail_cache_bytes = 256 << 10;
    config.flush = flush;
    config.flush_interval_ms = 10;
    config.checkpoint_interval_ms = 50;
    // Tests drive retention themselves, with the disk usage they choose.
    config.retention_check_interval_ms = 3_600_000;
    config
}

/// The body of message `n` of a queue: its number, then filler of a size that varies with it.
pub fn body_of(queue: u32, n: u64) -> Vec<u8> {
    let mut body = format!("q{queue}-m{n}-").into_bytes();
    let filler = (n * 37 % 700) as usize;
    body.extend((0..filler).map(|i| (i as u64 + n) as u8));
    body
}

/// Encodes one message of `topic` with the given body and tag.
pub fn encode(topic: &str, tag: &str, body: &[u8], out: &mut Vec<u8>) {
    RecordBuilder::new(body)
        .topic(topic)
        .tag(tag)
        .keys("k")
        .encode(out)
        .expect("encode record");
}

/// Checks that `queue` of `topic` holds exactly messages `0..count`, at dense offsets from
/// 0, each with the body [`body_of`] gives it.
pub async fn check_queue(store: &ShardStore, topic: &str, queue: QueueId, count: u64) {
    let read = read_all(store, topic, queue, 0).await;
    assert_eq!(read.len() as u64, count, "messages in queue {}", queue.0);
    for (n, (offset, body)) in read.iter().enumerate() {
        assert_eq!(*offset, n as u64);
        assert_eq!(
            body,
            &body_of(queue.0, n as u64),
            "queue {} message {n}",
            queue.0
        );
    }
}

/// Reads every message of a queue from `from` on, returning (offset, body) pairs.
pub async fn read_all(
    store: &ShardStore,
    topic: &str,
    queue: QueueId,
    from: u64,
) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let batch = store
            .read(&ReadRequest {
                topic,
                queue,
                offset: QueueOffset(offset),
                max_messages: 64,
                max_bytes: 64 << 10,
                tag_filter: None,
            })
            .await
            .expect("read");
        if batch.records.is_empty() {
            return out;
        }
        for (record, view) in batch.records.iter().zip(batch.iter()) {
            out.push((record.queue_offset.0, view.body().to_vec()));
        }
        offset = batch.next_offset.0;
    }
}

/// Crashes `store` (it stops where it stands, see [`ShardStore::halt`]), reopens the
/// directory and runs `check` on the recovered store, then closes it cleanly, reopens it
/// once more and runs `check` again. Returns nothing: each store is closed.
pub async fn crash_and_reopen<F, Fut>(
    store: ShardStore,
    config: impl Fn() -> StorageConfig,
    check: F,
) where
    F: Fn(ShardStore) -> Fut,
    Fut: Future<Output = ShardStore>,
{
    store.halt();
    let store = ShardStore::open(config()).await.unwrap();
    assert!(!store.recovery_report().clean_shutdown);
    let store = check(store).await;
    store.close().await.unwrap();

    let store = ShardStore::open(config()).await.unwrap();
    assert!(store.recovery_report().clean_shutdown);
    let store = check(store).await;
    store.close().await.unwrap();
}
