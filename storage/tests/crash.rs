//! Process crash: a child process appends with `sync` flush and reports each acknowledged
//! batch to the parent; the parent kills it with SIGKILL after a random number of
//! acknowledgements, reopens the store, and checks that every acknowledged record is there,
//! intact, at the offset it was acknowledged with — and that nothing corrupt was recovered.
//!
//! The child is this same test binary, started with `SPILLWAY_CRASH_CHILD_DIR` set, running
//! the test `child_appender`. `SPILLWAY_CRASH_CYCLES` changes the number of cycles (default 20).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{body_of, data_dir, encode, read_all, run, small_config};
use rand::{Rng, SeedableRng};
use spillway_storage::{FlushMode, QueueId, ShardStore};

const TOPIC: &str = "payments";
const PRODUCERS: u32 = 4;
const CHILD_DIR_VARIABLE: &str = "SPILLWAY_CRASH_CHILD_DIR";

/// Entry point of the child process; does nothing when run as an ordinary test.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_DIR_VARIABLE) else {
        return;
    };
    run(move || async move {
        let store = ShardStore::open(small_config(std::path::Path::new(&dir), FlushMode::Sync))
            .await
            .expect("child: open store");
        let mut tasks = Vec::new();
        // Each producer owns one queue, so the body of every offset is known in advance.
        for producer in 0..PRODUCERS {
            let store = store.clone();
            tasks.push(glommio::spawn_local(async move {
                let queue = QueueId(producer);
                let mut next = store
                    .queue_offsets(TOPIC, queue)
                    .map_or(0, |(_, end)| end.0);
                let mut size = 1;
                loop {
                    let mut batch = Vec::new();
                    for n in 0..size {
                        encode(TOPIC, "", &body_of(producer, next + n), &mut batch);
                    }
                    let outcome = store
                        .append(TOPIC, queue, &batch)
                        .await
                        .expect("child: append");
                    assert_eq!(outcome.first_offset.0, next, "child: offsets must be dense");
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "ACK {producer} {next} {size}").expect("child: report");
                    stdout.flush().expect("child: flush report");
                    next += size;
                    size = size % 7 + 1;
                }
            }));
        }
        for task in tasks {
            task.await;
        }
    });
}

#[test]
fn sync_acknowledged_records_survive_sigkill() {
    let cycles: u64 = std::env::var("SPILLWAY_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = data_dir("crash");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = vec![0u64; PRODUCERS as usize];
    for cycle in 0..cycles {
        let seed = 1000 + cycle;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let kill_after = rng.gen_range(1..400);
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_VARIABLE, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut acks = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            // The test harness may print its own words before the first report on a line.
            let Some(at) = line.find("ACK ") else {
                continue;
            };
            let ack = &line[at + 4..];
            let fields: Vec<u64> = ack.split(' ').map(|field| field.parse().unwrap()).collect();
            let (producer, first, count) = (fields[0] as usize, fields[1], fields[2]);
            assert_eq!(
                first, acknowledged[producer],
                "seed {seed}: acks arrive in offset order"
            );
            acknowledged[producer] = first + count;
            acks += 1;
            if acks == kill_after {
                child.kill().unwrap();
                break;
            }
        }
        child.wait().unwrap();
        assert_eq!(
            acks, kill_after,
            "seed {seed}: child stopped before being killed"
        );

        let path = dir.path().to_path_buf();
        let expected = acknowledged.clone();
        let survivors = run(move || async move {
            let store = ShardStore::open(small_config(&path, FlushMode::Sync))
                .await
                .unwrap_or_else(|error| panic!("seed {seed}: reopen failed: {error}"));
            let mut survivors = Vec::new();
            for producer in 0..PRODUCERS {
                let messages = read_all(&store, TOPIC, QueueId(producer), 0).await;
                for (n, (offset, body)) in messages.iter().enumerate() {
                    assert_eq!(*offset, n as u64, "seed {seed}: offsets are dense");
                    assert_eq!(
                        body,
                        &body_of(producer, *offset),
                        "seed {seed}: record intact"
                    );
                }
                assert!(
                    messages.len() as u64 >= expected[producer as usize],
                    "seed {seed}: producer {producer} had {} acknowledged, {} survived",
                    expected[producer as usize],
                    messages.len()
                );
                survivors.push(messages.len() as u64);
            }
            store.close().await.unwrap();
            survivors
        });
        // Records written but not yet acknowledged may survive; the next child goes on
        // after them.
        acknowledged = survivors;
    }
}
