//! Sends N messages with `send_async` from tokio tasks: the client brings no runtime of its
//! own, its futures simply run on tokio's.
//!
//! ```text
//! cargo run --example async_producer_tokio -p spillway-client -- 127.0.0.1:9876 orders 10000
//! ```
//!
//! Arguments: name server address, topic, number of messages (default 10000).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use spillway_client::{ClientConfig, Message, Producer, ProducerConfig};

/// Tasks sending at once; each sends its share of the messages.
const TASKS: u64 = 8;

#[tokio::main]
async fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let (Some(name_server), Some(topic)) = (arguments.get(1), arguments.get(2)) else {
        eprintln!("usage: async_producer_tokio NAME_SERVER_ADDRESS TOPIC [COUNT]");
        return ExitCode::from(2);
    };
    let count: u64 = match arguments.get(3).map(|count| count.parse()) {
        None => 10_000,
        Some(Ok(count)) => count,
        Some(Err(error)) => {
            eprintln!("COUNT must be a number: {error}");
            return ExitCode::from(2);
        }
    };
    // Starting only spawns threads; it does not block on the network.
    let producer = match Producer::start(ProducerConfig::new(ClientConfig::new([
        name_server.as_str()
    ]))) {
        Ok(producer) => producer,
        Err(error) => {
            eprintln!("cannot start the producer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let topic: Arc<str> = Arc::from(topic.as_str());
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let producer = producer.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                // Start every send of this task, then wait for the acknowledgements: the
                // producer batches them.
                let sends: Vec<_> = (task..count)
                    .step_by(TASKS as usize)
                    .map(|index| {
                        producer.send_async(Message::new(topic.clone(), format!("message {index}")))
                    })
                    .collect();
                let mut sent = 0u64;
                for send in sends {
                    send.await?;
                    sent += 1;
                }
                Ok::<u64, spillway_client::ClientError>(sent)
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(count)) => sent += count,
            Ok(Err(error)) => {
                eprintln!("send failed: {error}");
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("task failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{sent} messages in {elapsed:.2?} ({:.0} messages/s); {:?}",
        sent as f64 / elapsed.as_secs_f64(),
        producer.stats()
    );
    // close() waits for the sender thread: keep it off tokio's workers.
    let closed = tokio::task::spawn_blocking(move || producer.close()).await;
    match closed {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => {
            eprintln!("close: {error}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("close task: {error}");
            ExitCode::FAILURE
        }
    }
}
