//! A push consumer in a clustering group: prints every message it is handed, and the
//! queues it owns whenever they change. Start several (in several terminals) with the same
//! group to watch the queues split among them, and stop one to watch the others take its
//! queues over.
//!
//! ```text
//! cargo run --example push_consumer -p spillway-client -- 127.0.0.1:9876 orders example-group
//! ```
//!
//! Arguments: name server address, topic, consumer group (default `example`), and how
//! many seconds to run (default: until Ctrl-C). It starts from the group's committed
//! offsets, or from the oldest messages for a new group, and commits every second and on
//! the way out.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spillway_client::{
    ClientConfig, ClientError, ConsumeResult, MessageHandler, PushConsumer, PushConsumerConfig,
    StartFrom,
};

/// How often the main thread looks at the Ctrl-C flag and the owned queues.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let (Some(name_server), Some(topic)) = (arguments.get(1), arguments.get(2)) else {
        eprintln!("usage: push_consumer NAME_SERVER_ADDRESS TOPIC [CONSUMER_GROUP [SECONDS]]");
        return ExitCode::from(2);
    };
    let group = arguments.get(3).map_or("example", String::as_str);
    let run_for = match arguments.get(4).map(|seconds| seconds.parse::<u64>()) {
        None => None,
        Some(Ok(seconds)) => Some(Duration::from_secs(seconds)),
        Some(Err(error)) => {
            eprintln!("SECONDS: {error}");
            return ExitCode::from(2);
        }
    };
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let handler = on_signal as extern "C" fn(libc::c_int);
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe.
        let previous = unsafe { libc::signal(signal, handler as libc::sighandler_t) };
        if previous == libc::SIG_ERR {
            eprintln!(
                "cannot catch signal {signal}: {}",
                std::io::Error::last_os_error()
            );
            return ExitCode::FAILURE;
        }
    }
    match consume(name_server, topic, group, run_for, &INTERRUPTED) {
        Ok(handled) => {
            println!("{handled} messages handled");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

/// Set by the first Ctrl-C (or SIGTERM).
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

fn consume(
    name_server: &str,
    topic: &str,
    group: &str,
    run_for: Option<Duration>,
    interrupted: &AtomicBool,
) -> Result<u64, ClientError> {
    let config = PushConsumerConfig {
        start_from: StartFrom::Earliest,
        ..PushConsumerConfig::new(ClientConfig::new([name_server]), group, topic)
    };
    let handler = MessageHandler::per_message(|message| {
        println!(
            "{} offset {}: tag {:?}, {} bytes: {}",
            message.queue(),
            message.offset,
            message.tag,
            message.body.len(),
            String::from_utf8_lossy(&message.body)
        );
        ConsumeResult::Success
    });
    let consumer = PushConsumer::start(config, handler)?;
    println!(
        "member {} of group {group}; Ctrl-C stops",
        consumer.client().client_id()
    );
    let started = Instant::now();
    let mut shown = Vec::new();
    while !interrupted.load(Ordering::Relaxed)
        && run_for.is_none_or(|limit| started.elapsed() < limit)
    {
        let queues = consumer.assigned_queues();
        if queues != shown {
            let names: Vec<String> = queues.iter().map(ToString::to_string).collect();
            println!("owning {} queues: {}", names.len(), names.join(" "));
            shown = queues;
        }
        std::thread::sleep(CHECK_INTERVAL);
    }
    println!("shutting down: finishing handlers, committing, leaving the group");
    consumer.shutdown()?;
    Ok(consumer.stats().messages_handled)
}
