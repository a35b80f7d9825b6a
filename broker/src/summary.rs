//! The human-readable summary `spillway-broker --check` prints: identity, addresses,
//! shards (core, data directory, queue count) and each topic's `queue -> shard` layout.
//!
//! Text for people, not a format for programs: it may change freely. It only reads a
//! validated [`BrokerConfig`]; it decides nothing.

use std::fmt::Write;

use spillway_storage::{FlushMode, QueueId, ShardId};

use crate::config::BrokerConfig;
use crate::cores::AvailableCores;

/// Most queue numbers listed for one shard of one topic before the list is cut short.
pub const MAX_LISTED_QUEUES: usize = 32;

/// The summary of a validated config, several lines ending in a newline.
pub fn summary(config: &BrokerConfig, cores: &AvailableCores) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut text, config, cores);
    text
}

fn write_summary(
    out: &mut String,
    config: &BrokerConfig,
    cores: &AvailableCores,
) -> std::fmt::Result {
    let role = if config.is_master() {
        "master"
    } else {
        "replica"
    };
    writeln!(
        out,
        "broker {} (broker_id {}, {role}) in cluster {}",
        config.broker_name, config.broker_id, config.cluster
    )?;
    writeln!(
        out,
        "listens on {}, advertised as {}",
        config.listen_address,
        config.advertised_endpoint()
    )?;
    let name_servers: Vec<String> = config
        .name_servers
        .iter()
        .map(ToString::to_string)
        .collect();
    writeln!(out, "name servers: {}", name_servers.join(", "))?;
    let storage = &config.storage;
    let flush = match storage.flush {
        FlushMode::Sync => "sync".to_owned(),
        FlushMode::Async => format!("async, fdatasync every {} ms", storage.flush_interval_ms),
    };
    writeln!(
        out,
        "storage: flush {flush}; segments of {}; retention {} h; disk marks {}% / {}%",
        bytes(storage.segment_size_bytes),
        storage.retention_hours,
        storage.disk_high_mark_percent,
        storage.disk_hard_mark_percent
    )?;

    let shard_count = config.shard_count();
    let queues = config.queues_per_shard();
    writeln!(out, "shards: {shard_count}")?;
    for shard in (0..shard_count).map(ShardId) {
        let core = config
            .shard_core(shard)
            .map_or("unpinned".to_owned(), |core| format!("core {core}"));
        writeln!(
            out,
            "  shard {shard}: {core}, {}, {} configured queues",
            config.storage_config(shard).shard_dir().display(),
            queues[usize::from(shard.0)]
        )?;
    }

    let auto_create = if config.auto_create_topics {
        format!("on, {} queues each", config.auto_create_queues)
    } else {
        "off".to_owned()
    };
    writeln!(
        out,
        "topics: {} (auto-create {auto_create})",
        config.topics.len()
    )?;
    for topic in &config.topics {
        let layout = if topic.pins.is_empty() {
            "round-robin".to_owned()
        } else {
            format!("{} pinned, the rest round-robin", topic.pins.len())
        };
        writeln!(out, "  {}: {} queues, {layout}", topic.name, topic.queues)?;
        let mut owned = vec![Vec::new(); usize::from(shard_count)];
        for queue in 0..topic.queues {
            let shard = config.topic_queue_shard(topic, QueueId(queue));
            owned[usize::from(shard.0)].push(queue);
        }
        for (shard, queues) in owned.iter().enumerate() {
            if !queues.is_empty() {
                writeln!(out, "    shard {shard}: queues {}", queue_list(queues))?;
            }
        }
    }
    for warning in config.warnings(cores) {
        writeln!(out, "warning: {warning}")?;
    }
    Ok(())
}

/// `0-3, 6, 8` (runs as ranges), cut after [`MAX_LISTED_QUEUES`] entries.
fn queue_list(queues: &[u32]) -> String {
    let mut entries = Vec::new();
    let mut index = 0;
    while index < queues.len() {
        let start = queues[index];
        let mut end = start;
        while index + 1 < queues.len() && queues[index + 1] == end + 1 {
            index += 1;
            end += 1;
        }
        index += 1;
        if entries.len() == MAX_LISTED_QUEUES {
            let rest = queues.len() - queues.partition_point(|&queue| queue < start);
            entries.push(format!("… and {rest} more"));
            break;
        }
        entries.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    entries.join(", ")
}

/// A byte count in the largest binary unit that divides it.
fn bytes(count: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if count >= size && count % size == 0 {
            return format!("{} {unit}", count / size);
        }
    }
    format!("{count} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_lists_show_runs_as_ranges_and_stop_at_the_limit() {
        assert_eq!(queue_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3, 6, 8-9");
        let every_other: Vec<u32> = (0..100).map(|queue| queue * 2).collect();
        let list = queue_list(&every_other);
        assert!(list.starts_with("0, 2, 4"), "{list}");
        assert!(list.ends_with("62, … and 68 more"), "{list}");
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(bytes(1 << 30), "1 GiB");
        assert_eq!(bytes(3 << 20), "3 MiB");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
