//! `Pull`: read a queue from an offset on the queue's owner, waiting (long polling) when
//! there is nothing yet.
//!
//! The owner reads through the storage engine (the tail cache for tailing consumers,
//! O_DIRECT reads for older data; every record CRC-checked) and returns the stored records
//! as the response payload, unchanged. With nothing at the offset, the pull subscribes to
//! the queue ([`crate::long_poll`]) and waits until the next append to it is readable or
//! its max wait (capped at `limits.max_pull_wait_ms`) runs out, then reads again. Shutdown
//! ends every wait at once.
//!
//! Tag expressions are RocketMQ's: empty or `*` for everything, else `a || b || c`. The
//! engine filters by the index's tag hash first and compares the tag itself only on a hash
//! match.
//!
//! A pull may also commit the group's offset (`commit_offset`), which saves a round trip
//! for push consumers. That commit is not waited for: it becomes durable with the next
//! offsets write (milliseconds later); an explicit `CommitConsumerOffset` is answered only
//! once durable.

use std::rc::Rc;
use std::time::{Duration, Instant};

use spillway_storage::{
    QueueId, QueueOffset, ReadBatch, ReadRequest, ReadStatus, StorageError, TagFilter,
};
use spillway_wire::message::{PullRequest, PullResponse, PullStatus};
use spillway_wire::{ErrorCode, Frame};

use crate::connection::Response;
use crate::handlers::offsets::check_committable;
use crate::refusal::Refusal;
use crate::shard::Shard;

/// Longest tag expression accepted, in bytes.
pub const MAX_TAG_EXPRESSION_BYTES: usize = 4096;
/// Most tags in one expression.
pub const MAX_TAGS: usize = 64;

/// A pull as its owner runs it: owned, so it can cross to another shard.
struct PullJob {
    group: String,
    topic: String,
    queue: u32,
    offset: u64,
    max_messages: u32,
    max_bytes: u32,
    tags: Option<Vec<String>>,
    max_wait: Duration,
    commit_offset: Option<u64>,
}

/// Handles a pull request.
pub async fn pull(shard: &Rc<Shard>, frame: &Frame) -> Result<Response<PullResponse>, Refusal> {
    let request = frame.header::<PullRequest>()?;
    let topic = request.topic.as_str();
    let queue = request.queue_id.to_native().0;
    let owner = shard.owner_of(topic, queue)?;
    let limits = &shard.config.limits;
    let max_messages = request.max_messages.to_native();
    if max_messages == 0 {
        return Err(Refusal::new(
            ErrorCode::InvalidArgument,
            "max_messages must be at least 1",
        ));
    }
    // One message is always returned whatever its size; beyond that, stay well inside a
    // frame.
    let frame_room = limits
        .max_frame_bytes
        .saturating_sub(crate::config::FRAME_HEADROOM_BYTES);
    let max_bytes = (request.max_bytes.to_native() as usize).min(frame_room) as u32;
    let max_wait_ms = request.max_wait_ms.to_native().min(limits.max_pull_wait_ms);
    let job = PullJob {
        group: request.consumer_group.as_str().to_owned(),
        topic: topic.to_owned(),
        queue,
        offset: request.offset.to_native().0,
        max_messages,
        max_bytes,
        tags: parse_tag_expression(request.tag_expression.as_str())?,
        max_wait: Duration::from_millis(u64::from(max_wait_ms)),
        commit_offset: request
            .commit_offset
            .as_ref()
            .map(|offset| offset.to_native().0),
    };
    let batch = shard
        .run_on(
            owner,
            move |owner| async move { pull_here(&owner, job).await },
        )
        .await??;
    Ok(Response {
        header: PullResponse {
            status: match batch.status {
                ReadStatus::Found => PullStatus::Found,
                ReadStatus::NoNewMessages => PullStatus::NoNewMessages,
                ReadStatus::OffsetTooSmall => PullStatus::OffsetTooSmall,
                ReadStatus::OffsetTooLarge => PullStatus::OffsetTooLarge,
            },
            next_offset: spillway_wire::QueueOffset(batch.next_offset.0),
            min_offset: spillway_wire::QueueOffset(batch.min_offset.0),
            max_offset: spillway_wire::QueueOffset(batch.max_offset.0),
            record_count: batch.records.len() as u32,
        },
        payload: batch.bytes,
    })
}

/// `""` and `"*"` mean every tag; otherwise tags separated by `||`.
fn parse_tag_expression(expression: &str) -> Result<Option<Vec<String>>, Refusal> {
    let expression = expression.trim();
    if expression.is_empty() || expression == "*" {
        return Ok(None);
    }
    if expression.len() > MAX_TAG_EXPRESSION_BYTES {
        return Err(Refusal::new(
            ErrorCode::InvalidArgument,
            format!("tag expression longer than {MAX_TAG_EXPRESSION_BYTES} bytes"),
        ));
    }
    let tags: Vec<String> = expression
        .split("||")
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(str::to_owned)
        .collect();
    if tags.is_empty() || tags.len() > MAX_TAGS {
        return Err(Refusal::new(
            ErrorCode::InvalidArgument,
            format!("tag expression {expression:?} must name 1 to {MAX_TAGS} tags, as a || b"),
        ));
    }
    Ok(Some(tags))
}

/// Runs a pull on the queue's owner: read, and if nothing is there, wait and read again.
async fn pull_here(shard: &Rc<Shard>, job: PullJob) -> Result<ReadBatch, Refusal> {
    if let Some(offset) = job.commit_offset.filter(|_| !job.group.is_empty()) {
        match check_committable(shard, &job.topic, job.queue, offset) {
            Err(refusal) => tracing::debug!(%refusal, "offset commit with a pull refused"),
            Ok(()) => {
                let offsets = shard.offsets.clone();
                let (group, topic, queue) = (job.group.clone(), job.topic.clone(), job.queue);
                glommio::spawn_local(async move {
                    if let Err(error) = offsets.commit(&group, &topic, queue, offset).await {
                        tracing::warn!(%error, group, topic, queue, "offset commit with a pull failed");
                    }
                })
                .detach();
            }
        }
    }
    let filter = job
        .tags
        .as_ref()
        .map(|tags| TagFilter::new(tags.iter().map(String::as_str)));
    let request = ReadRequest {
        topic: &job.topic,
        queue: QueueId(job.queue),
        offset: QueueOffset(job.offset),
        max_messages: job.max_messages,
        max_bytes: job.max_bytes,
        tag_filter: filter.as_ref(),
    };
    let deadline = Instant::now() + job.max_wait;
    loop {
        let signal = shard.long_poll.subscribe(&job.topic, job.queue);
        let seen = signal.generation();
        let batch = read(shard, &request).await;
        let waiting = matches!(&batch, Ok(batch) if batch.status == ReadStatus::NoNewMessages);
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !waiting || remaining.is_zero() || shard.is_shutting_down() {
            shard.long_poll.release(&job.topic, job.queue, signal);
            return batch;
        }
        let timeout = async {
            glommio::timer::sleep(remaining).await;
        };
        let shutdown = shard.shutdown.changed();
        let appended = signal.changed_since(seen);
        futures_lite::future::or(appended, futures_lite::future::or(timeout, shutdown)).await;
        shard.long_poll.release(&job.topic, job.queue, signal);
    }
}

/// Reads; a queue the topic has but nobody has written to yet is an empty queue.
async fn read(shard: &Shard, request: &ReadRequest<'_>) -> Result<ReadBatch, Refusal> {
    match shard.store.read(request).await {
        Err(StorageError::QueueNotFound { .. }) => Ok(ReadBatch {
            status: if request.offset.0 == 0 {
                ReadStatus::NoNewMessages
            } else {
                ReadStatus::OffsetTooLarge
            },
            bytes: Vec::new(),
            records: Vec::new(),
            next_offset: QueueOffset(0),
            min_offset: QueueOffset(0),
            max_offset: QueueOffset(0),
        }),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions() {
        assert_eq!(parse_tag_expression("").unwrap(), None);
        assert_eq!(parse_tag_expression(" * ").unwrap(), None);
        assert_eq!(
            parse_tag_expression("paid || refunded").unwrap(),
            Some(vec!["paid".to_owned(), "refunded".to_owned()])
        );
        assert_eq!(
            parse_tag_expression("||").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        let many = vec!["t"; MAX_TAGS + 1].join("||");
        assert_eq!(
            parse_tag_expression(&many).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }
}
