//! Seeded corruption of a closed store: truncated last segment, garbage after the log's
//! end, single bit flips anywhere. Recovery must yield exactly the longest valid prefix and
//! never a corrupt record; damage followed by more than a torn-tail window of valid data must
//! be refused (and cut only with `repair`).
//!
//! `SPILLWAY_CORRUPTION_CASES=N` changes the number of cases (default 1000);
//! `SPILLWAY_CORRUPTION_SEED=S` replays one case. A failure prints its seed.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::{body_of, data_dir, encode, read_all, run, small_config};
use rand::{Rng, SeedableRng};
use spillway_storage::{FlushMode, QueueId, ShardStore, StorageConfig, StorageError};

const TOPIC: &str = "audit";
const QUEUES: u32 = 3;

/// A record of the template log, in log order.
#[derive(Clone, Copy, Debug)]
struct Stored {
    position: u64,
    len: u64,
    queue: u32,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Writes the template store and lists its records by position.
async fn build_template(config: StorageConfig) -> Vec<Stored> {
    let store = ShardStore::open(config).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut next = [0u64; QUEUES as usize];
    for _ in 0..2500 {
        let queue = rng.gen_range(0..QUEUES);
        let mut batch = Vec::new();
        for _ in 0..rng.gen_range(1..4) {
            encode(
                TOPIC,
                "t",
                &body_of(queue, next[queue as usize]),
                &mut batch,
            );
            next[queue as usize] += 1;
        }
        store.append(TOPIC, QueueId(queue), &batch).await.unwrap();
    }
    let mut stored = Vec::new();
    for queue in 0..QUEUES {
        let mut offset = 0;
        loop {
            let batch = store
                .read(&spillway_storage::ReadRequest {
                    topic: TOPIC,
                    queue: QueueId(queue),
                    offset: spillway_storage::QueueOffset(offset),
                    max_messages: 256,
                    max_bytes: 1 << 20,
                    tag_filter: None,
                })
                .await
                .unwrap();
            if batch.records.is_empty() {
                break;
            }
            for view in batch.iter() {
                stored.push(Stored {
                    position: view.log_position(),
                    len: view.total_length() as u64,
                    queue,
                });
            }
            offset = batch.next_offset.0;
        }
    }
    store.close().await.unwrap();
    stored.sort_by_key(|record| record.position);
    stored
}

enum Expect {
    /// The records before this index survive, nothing else.
    Prefix(usize),
    /// Recovery refuses: damage at this position.
    Damaged(u64),
}

fn segment_path(shard: &Path, position: u64, segment_size: u64) -> PathBuf {
    shard.join("commitlog").join(format!(
        "{:020}.log",
        position / segment_size * segment_size
    ))
}

/// Applies the seed's corruption to `shard` and says what recovery must find.
fn corrupt(
    seed: u64,
    shard: &Path,
    records: &[Stored],
    config: &StorageConfig,
) -> (Expect, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let segment_size = config.segment_size_bytes;
    let last = records.last().unwrap();
    let log_end = last.position + last.len;
    // Without a checkpoint, recovery scans (and so verifies) the whole log.
    std::fs::remove_file(shard.join("checkpoint")).unwrap();
    match seed % 3 {
        0 => {
            let segment_start = last.position / segment_size * segment_size;
            let length = rng.gen_range(0..=log_end - segment_start + 100);
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(segment_path(shard, last.position, segment_size))
                .unwrap();
            file.set_len(length).unwrap();
            let cut = segment_start + length;
            let survivors = records
                .iter()
                .take_while(|r| r.position + r.len <= cut)
                .count();
            (
                Expect::Prefix(survivors),
                format!("truncate last segment to {length}"),
            )
        }
        1 => {
            let garbage: Vec<u8> = (0..rng.gen_range(1..5000)).map(|_| rng.gen()).collect();
            let path = segment_path(shard, log_end, segment_size);
            let at = log_end % segment_size;
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            file.write_all_at(&garbage, at).unwrap();
            (
                Expect::Prefix(records.len()),
                format!("{} garbage bytes at {log_end}", garbage.len()),
            )
        }
        _ => {
            // Half the flips land in the tail window, half anywhere.
            let window = config.torn_tail_window_bytes();
            let index = if rng.gen_bool(0.5) {
                let tail_from = records.partition_point(|r| r.position + window < log_end);
                rng.gen_range(tail_from..records.len())
            } else {
                rng.gen_range(0..records.len())
            };
            let victim = records[index];
            let bit = rng.gen_range(0..victim.len * 8);
            let at = victim.position + bit / 8;
            use std::os::unix::fs::FileExt;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(segment_path(shard, at, segment_size))
                .unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, at % segment_size).unwrap();
            byte[0] ^= 1 << (bit % 8);
            file.write_all_at(&byte, at % segment_size).unwrap();
            let damaged = records
                .iter()
                .any(|r| r.position >= victim.position + window);
            let expect = if damaged {
                Expect::Damaged(victim.position)
            } else {
                Expect::Prefix(index)
            };
            (
                expect,
                format!("flip bit {bit} of record {index} at {}", victim.position),
            )
        }
    }
}

async fn check_prefix(
    store: &ShardStore,
    records: &[Stored],
    survivors: usize,
) -> Result<(), String> {
    let mut expected: HashMap<u32, u64> = HashMap::new();
    for record in &records[..survivors] {
        *expected.entry(record.queue).or_default() += 1;
    }
    for queue in 0..QUEUES {
        let want = expected.get(&queue).copied().unwrap_or(0);
        let got = if store.queue_offsets(TOPIC, QueueId(queue)).is_ok() {
            read_all(store, TOPIC, QueueId(queue), 0).await
        } else {
            Vec::new()
        };
        if got.len() as u64 != want {
            return Err(format!(
                "queue {queue}: {} records survive, expected {want}",
                got.len()
            ));
        }
        for (offset, body) in got {
            if body != body_of(queue, offset) {
                return Err(format!("queue {queue} offset {offset}: wrong body"));
            }
        }
    }
    // The log ends after the last survivor, or at the start of the segment where the first
    // lost record was (when the zero padding before it closes the previous segment).
    let end = records[..survivors]
        .last()
        .map_or(0, |r| r.position + r.len);
    let limit = records.get(survivors).map_or(end, |r| r.position);
    let log_end = store.recovery_report().log_end.0;
    if !(end..=limit).contains(&log_end) {
        return Err(format!("log ends at {log_end}, expected {end}..={limit}"));
    }
    Ok(())
}

/// Runs one case; returns whether recovery had to refuse (damage before the tail).
async fn run_case(
    seed: u64,
    template: &Path,
    work: &Path,
    records: &[Stored],
) -> Result<bool, String> {
    let case_dir = work.join(format!("case-{seed}"));
    copy_dir(template, &case_dir);
    let mut config = small_config(&case_dir, FlushMode::Async);
    let (expect, what) = corrupt(seed, &config.shard_dir(), records, &config);
    let outcome = async {
        match expect {
            Expect::Prefix(survivors) => {
                let store = ShardStore::open(config.clone())
                    .await
                    .map_err(|e| format!("open: {e}"))?;
                check_prefix(&store, records, survivors).await?;
                if seed % 10 == 0 {
                    // The store takes appends again, at the right offsets.
                    let queue = records[0].queue;
                    let (_, end) = store
                        .queue_offsets(TOPIC, QueueId(queue))
                        .map_err(|e| e.to_string())?;
                    let mut batch = Vec::new();
                    encode(TOPIC, "t", &body_of(queue, end.0), &mut batch);
                    let outcome = store
                        .append(TOPIC, QueueId(queue), &batch)
                        .await
                        .map_err(|e| e.to_string())?;
                    if outcome.first_offset != end {
                        return Err(format!(
                            "append after recovery got {:?}, expected {end:?}",
                            outcome.first_offset
                        ));
                    }
                }
                store.close().await.map_err(|e| format!("close: {e}"))?;
                Ok(false)
            }
            Expect::Damaged(position) => {
                match ShardStore::open(config.clone()).await {
                    Err(StorageError::DamagedLog {
                        position: found, ..
                    }) if found.0 == position => {}
                    Err(other) => {
                        return Err(format!("expected DamagedLog at {position}, got {other}"))
                    }
                    Ok(_) => {
                        return Err(format!("expected DamagedLog at {position}, store opened"))
                    }
                }
                if seed % 5 == 2 {
                    config.repair = true;
                    let store = ShardStore::open(config.clone())
                        .await
                        .map_err(|e| format!("repair open: {e}"))?;
                    let survivors = records.partition_point(|r| r.position < position);
                    check_prefix(&store, records, survivors).await?;
                    store.close().await.map_err(|e| e.to_string())?;
                }
                Ok(true)
            }
        }
    }
    .await;
    std::fs::remove_dir_all(&case_dir).unwrap();
    outcome.map_err(|error| format!("{what}: {error}"))
}

#[test]
fn recovery_yields_longest_valid_prefix_under_seeded_corruption() {
    let cases: u64 = std::env::var("SPILLWAY_CORRUPTION_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let only: Option<u64> = std::env::var("SPILLWAY_CORRUPTION_SEED")
        .ok()
        .and_then(|v| v.parse().ok());
    let dir = data_dir("corruption");
    let path = dir.path().to_path_buf();
    let failures = run(move || async move {
        let template = path.join("template");
        let records = build_template(small_config(&template, FlushMode::Async)).await;
        assert!(records.len() > 1000);
        let mut failures = Vec::new();
        let seeds: Vec<u64> = match only {
            Some(seed) => vec![seed],
            None => (0..cases).collect(),
        };
        let (mut refused, mut recovered) = (0, 0);
        for seed in seeds {
            match run_case(seed, &template, &path, &records).await {
                Ok(true) => refused += 1,
                Ok(false) => recovered += 1,
                Err(error) => {
                    eprintln!("corruption case failed: SPILLWAY_CORRUPTION_SEED={seed}: {error}");
                    failures.push(seed);
                }
            }
        }
        eprintln!(
            "corruption cases: {recovered} recovered to a prefix, {refused} refused as damaged"
        );
        if only.is_none() && cases >= 30 {
            assert!(
                refused > 0 && recovered > 0,
                "both outcomes must be exercised"
            );
        }
        failures
    });
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
