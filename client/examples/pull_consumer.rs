//! Reads every queue of a topic from the consumer group's committed offset (or the start)
//! to its end, prints the messages and commits where it got to.
//!
//! ```text
//! cargo run --example pull_consumer -p spillway-client -- 127.0.0.1:9876 orders example-group
//! ```
//!
//! Arguments: name server address, topic, consumer group (default `example`).

use std::process::ExitCode;
use std::time::Duration;

use spillway_client::{ClientConfig, ClientError, PullConsumer, PullStatus};

/// How long each pull may wait for new messages once a queue is drained.
const MAX_WAIT: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let (Some(name_server), Some(topic)) = (arguments.get(1), arguments.get(2)) else {
        eprintln!("usage: pull_consumer NAME_SERVER_ADDRESS TOPIC [CONSUMER_GROUP]");
        return ExitCode::from(2);
    };
    let group = arguments.get(3).map_or("example", String::as_str);
    match consume(name_server, topic, group) {
        Ok(total) => {
            println!("{total} messages");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn consume(name_server: &str, topic: &str, group: &str) -> Result<u64, ClientError> {
    let consumer = PullConsumer::new(ClientConfig::new([name_server]), group)?;
    let mut total = 0;
    for queue in consumer.queues(topic)? {
        let (min_offset, _) = consumer.queue_offsets(&queue)?;
        let mut offset = consumer.committed_offset(&queue)?.unwrap_or(min_offset);
        loop {
            let pulled = consumer.pull(&queue, offset, 256, MAX_WAIT, "*")?;
            for message in &pulled.messages {
                println!(
                    "{queue} offset {}: tag {:?}, {} bytes: {}",
                    message.offset,
                    message.tag,
                    message.body.len(),
                    String::from_utf8_lossy(&message.body)
                );
                total += 1;
            }
            match pulled.status {
                PullStatus::Found | PullStatus::OffsetTooSmall | PullStatus::OffsetTooLarge => {
                    offset = pulled.next_offset;
                }
                PullStatus::NoNewMessages => break,
            }
            if pulled.status == PullStatus::Found
                && pulled.messages.is_empty()
                && offset >= pulled.max_offset
            {
                break;
            }
        }
        consumer.commit_offset(&queue, offset)?;
    }
    Ok(total)
}
