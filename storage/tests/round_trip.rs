//! Append and read back through the whole engine: segment roll-overs, both flush modes,
//! restarts, tag filters, time lookups, retention, index rebuilds and limits.

mod common;

use common::{body_of, check_queue, data_dir, encode, read_all, run, small_config};
use spillway_storage::{
    FlushMode, QueueId, QueueOffset, ReadRequest, ReadStatus, ShardStore, StorageError, TagFilter,
};

const TOPIC: &str = "orders";

async fn append_messages(store: &ShardStore, queues: u32, per_queue: u64) {
    for n in 0..per_queue {
        for queue in 0..queues {
            let mut batch = Vec::new();
            encode(
                TOPIC,
                if n % 3 == 0 { "red" } else { "blue" },
                &body_of(queue, n),
                &mut batch,
            );
            let outcome = store
                .append(TOPIC, QueueId(queue), &batch)
                .await
                .expect("append");
            assert_eq!(outcome.first_offset, QueueOffset(n));
            assert_eq!(outcome.record_count, 1);
        }
    }
}

fn round_trip_in(flush: FlushMode) {
    let dir = data_dir("round-trip");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let config = small_config(&path, flush);
        let store = ShardStore::open(config.clone()).await.expect("open");
        append_messages(&store, 3, 400).await;
        for queue in 0..3 {
            check_queue(&store, TOPIC, QueueId(queue), 400).await;
        }
        store.close().await.expect("close");
        let segments = std::fs::read_dir(path.join("shard-0/commitlog"))
            .unwrap()
            .count();
        assert!(
            segments >= 4,
            "expected many segment roll-overs, got {segments} segments"
        );

        // After a clean restart everything is read from disk (the tail cache is empty).
        let store = ShardStore::open(config).await.expect("reopen");
        assert!(store.recovery_report().clean_shutdown);
        for queue in 0..3 {
            let messages = read_all(&store, TOPIC, QueueId(queue), 0).await;
            assert_eq!(messages.len(), 400, "queue {queue} after restart");
            assert!(messages
                .iter()
                .enumerate()
                .all(|(n, (_, body))| body == &body_of(queue, n as u64)));
        }
        // Appends go on where they left off.
        let mut batch = Vec::new();
        encode(TOPIC, "", b"after restart", &mut batch);
        let outcome = store.append(TOPIC, QueueId(0), &batch).await.unwrap();
        assert_eq!(outcome.first_offset, QueueOffset(400));
        store.close().await.unwrap();
    });
}

#[test]
fn round_trip_across_segment_rolls_with_sync_flush() {
    round_trip_in(FlushMode::Sync);
}

#[test]
fn round_trip_across_segment_rolls_with_async_flush() {
    round_trip_in(FlushMode::Async);
}

#[test]
fn appends_are_placed_in_call_order_even_while_their_queue_is_being_created() {
    let dir = data_dir("creation-order");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        // Several rounds of new queues: the first append of each creates the queue (file
        // I/O, awaited) while the others arrive behind it, as the parts of successive
        // produce requests do.
        for round in 0..20u32 {
            let queue = QueueId(100 + round);
            let appends: Vec<_> = (0..16u64)
                .map(|n| {
                    let store = store.clone();
                    let mut batch = Vec::new();
                    encode(TOPIC, "", &body_of(queue.0, n), &mut batch);
                    glommio::spawn_local(async move {
                        store
                            .append(TOPIC, queue, &batch)
                            .await
                            .unwrap()
                            .first_offset
                            .0
                    })
                })
                .collect();
            for (n, append) in appends.into_iter().enumerate() {
                assert_eq!(
                    append.await,
                    n as u64,
                    "append {n} of new queue {}",
                    queue.0
                );
            }
        }
        store.close().await.unwrap();
    });
}

#[test]
fn batch_gets_dense_offsets_and_concurrent_appends_interleave() {
    let dir = data_dir("batches");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Sync))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for producer in 0..8u32 {
            let store = store.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut offsets = Vec::new();
                for round in 0..20u64 {
                    let mut batch = Vec::new();
                    for n in 0..5 {
                        encode(TOPIC, "", &body_of(producer, round * 5 + n), &mut batch);
                    }
                    let outcome = store
                        .append(TOPIC, QueueId(producer % 2), &batch)
                        .await
                        .unwrap();
                    assert_eq!(outcome.record_count, 5);
                    offsets.push(outcome.first_offset.0);
                }
                offsets
            }));
        }
        let mut all_offsets = Vec::new();
        for task in tasks {
            all_offsets.extend(task.await);
        }
        all_offsets.sort();
        // 4 producers per queue, 20 batches of 5 each: offsets 0,5,10,.. twice (two queues).
        let expected: Vec<u64> = (0..80).flat_map(|i| [i * 5, i * 5]).collect();
        assert_eq!(all_offsets, expected);
        assert_eq!(
            store.queue_offsets(TOPIC, QueueId(0)).unwrap(),
            (QueueOffset(0), QueueOffset(400))
        );
        store.close().await.unwrap();
    });
}

#[test]
fn tag_filtered_read_returns_only_matching_tags() {
    let dir = data_dir("tags");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        append_messages(&store, 1, 90).await;
        let filter = TagFilter::new(["red"]);
        let mut offsets = Vec::new();
        let mut offset = 0;
        loop {
            let batch = store
                .read(&ReadRequest {
                    topic: TOPIC,
                    queue: QueueId(0),
                    offset: QueueOffset(offset),
                    max_messages: 7,
                    max_bytes: 1 << 20,
                    tag_filter: Some(&filter),
                })
                .await
                .unwrap();
            if batch.status != ReadStatus::Found {
                break;
            }
            for view in batch.iter() {
                assert_eq!(view.tag(), b"red");
                offsets.push(view.queue_offset());
            }
            offset = batch.next_offset.0;
        }
        assert_eq!(offsets, (0..90).filter(|n| n % 3 == 0).collect::<Vec<_>>());
        store.close().await.unwrap();
    });
}

#[test]
fn read_statuses_and_byte_limit() {
    let dir = data_dir("statuses");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Sync))
            .await
            .unwrap();
        append_messages(&store, 1, 10).await;
        let read = |offset, max_bytes| {
            let store = store.clone();
            async move {
                store
                    .read(&ReadRequest {
                        topic: TOPIC,
                        queue: QueueId(0),
                        offset: QueueOffset(offset),
                        max_messages: 100,
                        max_bytes,
                        tag_filter: None,
                    })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(read(10, 1 << 20).await.status, ReadStatus::NoNewMessages);
        let too_large = read(11, 1 << 20).await;
        assert_eq!(too_large.status, ReadStatus::OffsetTooLarge);
        assert_eq!(too_large.next_offset, QueueOffset(10));
        // A byte budget smaller than one message still returns that one message.
        let one = read(0, 1).await;
        assert_eq!(one.records.len(), 1);
        assert_eq!(one.next_offset, QueueOffset(1));
        let missing = store
            .read(&ReadRequest {
                topic: "nope",
                queue: QueueId(0),
                offset: QueueOffset(0),
                max_messages: 1,
                max_bytes: 1,
                tag_filter: None,
            })
            .await;
        assert!(matches!(missing, Err(StorageError::QueueNotFound { .. })));
        store.close().await.unwrap();
    });
}

#[test]
fn timestamp_lookup_finds_first_message_at_or_after() {
    let dir = data_dir("timestamps");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        let mut stamps = Vec::new();
        for n in 0..300u64 {
            let mut batch = Vec::new();
            encode(TOPIC, "", &body_of(0, n), &mut batch);
            store.append(TOPIC, QueueId(0), &batch).await.unwrap();
            stamps.push(store.last_store_timestamp_ms());
            if n % 100 == 99 {
                // Let the wall clock move on so several distinct store times exist.
                let stamp = store.last_store_timestamp_ms();
                while std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
                    <= stamp
                {
                    std::hint::spin_loop();
                }
            }
        }
        assert!(stamps[0] < stamps[150] && stamps[150] < stamps[299]);
        store.close().await.unwrap();
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        for probe in [stamps[0], stamps[150], stamps[299], stamps[299] + 1, 0] {
            let expected = stamps
                .iter()
                .position(|stamp| *stamp >= probe)
                .unwrap_or(300) as u64;
            let found = store
                .offset_for_timestamp(TOPIC, QueueId(0), probe)
                .await
                .unwrap();
            assert_eq!(found, QueueOffset(expected), "probe {probe}");
        }
        store.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_old_segments_and_advances_min_offset() {
    let dir = data_dir("retention");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        append_messages(&store, 2, 300).await;
        let segments_before = std::fs::read_dir(path.join("shard-0/commitlog"))
            .unwrap()
            .count();
        // Nothing is old yet and the disk is not full: nothing goes.
        let report = store
            .apply_retention(store.last_store_timestamp_ms(), &mut || Ok(10.0))
            .await
            .unwrap();
        assert_eq!(report.segments_deleted, 0);
        // 73 hours later everything but the active segment is past the 72 h retention.
        let later = store.last_store_timestamp_ms() + 73 * 3_600_000;
        let report = store
            .apply_retention(later, &mut || Ok(10.0))
            .await
            .unwrap();
        assert_eq!(report.segments_deleted, segments_before - 1);
        let listed = |dir: &str| std::fs::read_dir(path.join(dir)).unwrap().count();
        assert_eq!(listed("shard-0/commitlog"), 1);
        // Freed, not just moved aside, by the time the pass returns.
        assert_eq!(listed("shard-0/commitlog-trash"), 0);
        let (min, max) = store.queue_offsets(TOPIC, QueueId(0)).unwrap();
        assert!(min.0 > 0 && min.0 < 300, "min offset {min:?}");
        assert_eq!(max, QueueOffset(300));
        let old = store
            .read(&ReadRequest {
                topic: TOPIC,
                queue: QueueId(0),
                offset: QueueOffset(0),
                max_messages: 1,
                max_bytes: 1,
                tag_filter: None,
            })
            .await
            .unwrap();
        assert_eq!(old.status, ReadStatus::OffsetTooSmall);
        assert_eq!(old.next_offset, min);
        let rest = read_all(&store, TOPIC, QueueId(0), min.0).await;
        assert_eq!(rest.len() as u64, 300 - min.0);
        assert_eq!(rest[0].1, body_of(0, min.0));
        store.close().await.unwrap();
        // A segment a crash left half freed in the trash is freed at the next open.
        let leftover = path.join("shard-0/commitlog-trash/00000000000000000000.log");
        std::fs::write(&leftover, vec![7u8; 1 << 16]).unwrap();
        // The new minimum survives a restart.
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        assert!(!leftover.exists());
        assert_eq!(store.queue_offsets(TOPIC, QueueId(0)).unwrap(), (min, max));
        store.close().await.unwrap();
    });
}

#[test]
fn disk_usage_marks_delete_oldest_and_refuse_appends_when_full() {
    let dir = data_dir("disk-full");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Async))
            .await
            .unwrap();
        append_messages(&store, 4, 300).await;
        let now = store.last_store_timestamp_ms();
        // Usage falls by 1 point per deleted segment, from 88%: two deletions reach 86 > 85.
        let mut usage = 89.0;
        let report = store
            .apply_retention(now, &mut || {
                usage -= 1.0;
                Ok(usage)
            })
            .await
            .unwrap();
        assert_eq!(report.segments_deleted, 3);
        assert!(!report.disk_full);
        // Above the hard mark (and nothing left to delete) appends fail with DiskFull.
        let mut batch = Vec::new();
        encode(TOPIC, "", b"x", &mut batch);
        let report = store.apply_retention(now, &mut || Ok(99.0)).await.unwrap();
        assert!(report.disk_full);
        assert!(matches!(
            store.append(TOPIC, QueueId(0), &batch).await,
            Err(StorageError::DiskFull { .. })
        ));
        store.apply_retention(now, &mut || Ok(50.0)).await.unwrap();
        store.append(TOPIC, QueueId(0), &batch).await.unwrap();
        store.close().await.unwrap();
    });
}

#[test]
fn index_is_rebuilt_after_its_files_are_deleted() {
    let dir = data_dir("rebuild");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Sync))
            .await
            .unwrap();
        append_messages(&store, 3, 200).await;
        store.close().await.unwrap();
        std::fs::remove_dir_all(path.join("shard-0/index")).unwrap();
        let store = ShardStore::open(small_config(&path, FlushMode::Sync))
            .await
            .unwrap();
        assert!(store.recovery_report().full_rebuild);
        assert_eq!(store.recovery_report().records_scanned, 600);
        for queue in 0..3 {
            let messages = read_all(&store, TOPIC, QueueId(queue), 0).await;
            assert_eq!(messages.len(), 200);
            assert!(messages
                .iter()
                .enumerate()
                .all(|(n, (_, body))| body == &body_of(queue, n as u64)));
        }
        store.close().await.unwrap();
    });
}

#[test]
fn bad_batches_are_refused_whole_with_typed_errors() {
    let dir = data_dir("bad-batches");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Sync))
            .await
            .unwrap();
        let mut batch = Vec::new();
        encode(TOPIC, "", b"good", &mut batch);
        let good_len = batch.len();
        encode(TOPIC, "", b"corrupted", &mut batch);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        match store.append(TOPIC, QueueId(0), &batch).await {
            Err(StorageError::BadRecord { index: 1, .. }) => {}
            other => panic!("expected BadRecord at index 1, got {other:?}"),
        }
        assert!(matches!(
            store.append("other", QueueId(0), &batch[..good_len]).await,
            Err(StorageError::TopicMismatch { .. })
        ));
        assert!(matches!(
            store.append(TOPIC, QueueId(0), &[]).await,
            Err(StorageError::BadRecord { .. })
        ));
        let mut big = Vec::new();
        encode(TOPIC, "", &vec![7u8; 70 << 10], &mut big);
        assert!(matches!(
            store.append(TOPIC, QueueId(0), &big).await,
            Err(StorageError::BadRecord { .. })
        ));
        let mut huge = Vec::new();
        while huge.len() <= 1 << 20 {
            encode(TOPIC, "", &[1u8; 60_000], &mut huge);
        }
        assert!(matches!(
            store.append(TOPIC, QueueId(0), &huge).await,
            Err(StorageError::BatchTooLarge { .. })
        ));
        let mut bad_topic = Vec::new();
        encode("a/b", "", b"x", &mut bad_topic);
        assert!(matches!(
            store.append("a/b", QueueId(0), &bad_topic).await,
            Err(StorageError::BadTopic { .. })
        ));
        // Nothing of the refused batches was stored.
        assert!(matches!(
            store.queue_offsets(TOPIC, QueueId(0)),
            Err(StorageError::QueueNotFound { .. })
        ));
        store
            .append(TOPIC, QueueId(0), &batch[..good_len])
            .await
            .unwrap();
        assert_eq!(
            store.queue_offsets(TOPIC, QueueId(0)).unwrap().1,
            QueueOffset(1)
        );
        store.close().await.unwrap();
    });
}

#[test]
fn commit_log_is_opened_with_o_direct() {
    let dir = data_dir("odirect");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let store = ShardStore::open(small_config(&path, FlushMode::Sync))
            .await
            .unwrap();
        let segment = std::fs::read_dir(path.join("shard-0/commitlog"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut found = false;
        for fd in std::fs::read_dir("/proc/self/fd").unwrap() {
            let fd = fd.unwrap();
            if std::fs::read_link(fd.path()).ok().as_deref() != Some(segment.as_path()) {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                fd.file_name().to_str().unwrap()
            ))
            .unwrap();
            let flags = info
                .lines()
                .find_map(|line| line.strip_prefix("flags:"))
                .unwrap()
                .trim();
            let flags = u32::from_str_radix(flags, 8).unwrap();
            assert_ne!(
                flags & libc::O_DIRECT as u32,
                0,
                "segment opened without O_DIRECT: flags {flags:o}"
            );
            found = true;
        }
        assert!(found, "segment file {} is not open", segment.display());
        store.close().await.unwrap();
    });
}
