//! Sends N messages with blocking `send` and prints where each landed.
//!
//! ```text
//! cargo run --example sync_producer -p spillway-client -- 127.0.0.1:9876 orders 10
//! ```
//!
//! Arguments: name server address, topic, number of messages (default 10).

use std::process::ExitCode;
use std::sync::Arc;

use spillway_client::{ClientConfig, Message, Producer, ProducerConfig};

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    let (Some(name_server), Some(topic)) = (arguments.get(1), arguments.get(2)) else {
        eprintln!("usage: sync_producer NAME_SERVER_ADDRESS TOPIC [COUNT]");
        return ExitCode::from(2);
    };
    let count: u64 = match arguments.get(3).map(|count| count.parse()) {
        None => 10,
        Some(Ok(count)) => count,
        Some(Err(error)) => {
            eprintln!("COUNT must be a number: {error}");
            return ExitCode::from(2);
        }
    };
    let config = ProducerConfig::new(ClientConfig::new([name_server.as_str()]));
    let producer = match Producer::start(config) {
        Ok(producer) => producer,
        Err(error) => {
            eprintln!("cannot start the producer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let topic: Arc<str> = Arc::from(topic.as_str());
    for index in 0..count {
        let message = Message::new(topic.clone(), format!("message {index}")).with_tag("example");
        match producer.send(message) {
            Ok(sent) => println!(
                "message {index}: {}/{} offset {}",
                sent.broker_name, sent.queue_id, sent.offset
            ),
            Err(error) => {
                eprintln!("message {index} failed: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(error) = producer.close() {
        eprintln!("close: {error}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
