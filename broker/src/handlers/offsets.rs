//! Offsets: consumer groups' committed offsets, a queue's minimum and maximum, and the
//! first offset at or after a time. All answered by the queue's owner, which holds the
//! queue's index and its groups' offsets.
//!
//! A commit is answered once it is durable (a group-committed write and fdatasync of the
//! shard's offsets file, see [`crate::consumer_offsets`]), so a consumer that heard "ok"
//! resumes there after any crash.

use std::rc::Rc;

use spillway_storage::{QueueId, StorageError};
use spillway_wire::message::{
    CommitConsumerOffsetRequest, CommitConsumerOffsetResponse, GetQueueOffsetsRequest,
    GetQueueOffsetsResponse, QueryConsumerOffsetRequest, QueryConsumerOffsetResponse,
    SearchOffsetByTimestampRequest, SearchOffsetByTimestampResponse,
};
use spillway_wire::{ErrorCode, Frame, QueueOffset};

use crate::connection::Response;
use crate::refusal::Refusal;
use crate::shard::Shard;

/// Handles `CommitConsumerOffset`.
pub async fn commit_consumer_offset(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<CommitConsumerOffsetResponse>, Refusal> {
    let request = frame.header::<CommitConsumerOffsetRequest>()?;
    let topic = request.topic.as_str().to_owned();
    let queue = request.queue_id.to_native().0;
    let group = request.consumer_group.as_str().to_owned();
    let offset = request.offset.to_native().0;
    let owner = shard.owner_of(&topic, queue)?;
    shard
        .run_on(owner, move |owner| async move {
            check_committable(&owner, &topic, queue, offset)?;
            owner
                .offsets
                .commit(&group, &topic, queue, offset)
                .await
                .map_err(|error| Refusal::new(error.error_code(), error.to_string()))
        })
        .await??;
    Ok(Response::header(CommitConsumerOffsetResponse {}))
}

/// Refuses (`OffsetOutOfRange`) a consumer offset past the end of its queue, which must be
/// on this shard: the next offset to consume can be the queue's end, not beyond, or the
/// group would skip the messages written up to it.
pub fn check_committable(
    owner: &Shard,
    topic: &str,
    queue: u32,
    offset: u64,
) -> Result<(), Refusal> {
    let end = match owner.store.queue_offsets(topic, QueueId(queue)) {
        Ok((_, end)) => end.0,
        Err(StorageError::QueueNotFound { .. }) => 0,
        Err(error) => return Err(Refusal::from(error)),
    };
    if offset > end {
        return Err(Refusal::new(
            ErrorCode::OffsetOutOfRange,
            format!("offset {offset} is past the end ({end}) of {topic} queue {queue}"),
        ));
    }
    Ok(())
}

/// Handles `QueryConsumerOffset`.
pub async fn query_consumer_offset(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<QueryConsumerOffsetResponse>, Refusal> {
    let request = frame.header::<QueryConsumerOffsetRequest>()?;
    let topic = request.topic.as_str().to_owned();
    let queue = request.queue_id.to_native().0;
    let group = request.consumer_group.as_str().to_owned();
    let owner = shard.owner_of(&topic, queue)?;
    let offset = shard
        .run_on(owner, move |owner| async move {
            owner.offsets.get(&group, &topic, queue)
        })
        .await?;
    Ok(Response::header(QueryConsumerOffsetResponse {
        offset: offset.map(QueueOffset),
    }))
}

/// Handles `GetQueueOffsets`: a queue nobody has written to is empty (0, 0).
pub async fn queue_offsets(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<GetQueueOffsetsResponse>, Refusal> {
    let request = frame.header::<GetQueueOffsetsRequest>()?;
    let topic = request.topic.as_str().to_owned();
    let queue = request.queue_id.to_native().0;
    let owner = shard.owner_of(&topic, queue)?;
    let (min, max) = shard
        .run_on(owner, move |owner| async move {
            match owner.store.queue_offsets(&topic, QueueId(queue)) {
                Ok((min, max)) => Ok((min.0, max.0)),
                Err(StorageError::QueueNotFound { .. }) => Ok((0, 0)),
                Err(error) => Err(Refusal::from(error)),
            }
        })
        .await??;
    Ok(Response::header(GetQueueOffsetsResponse {
        min_offset: QueueOffset(min),
        max_offset: QueueOffset(max),
    }))
}

/// Handles `SearchOffsetByTimestamp`: the first offset stored at or after the time, or
/// the queue's end if none is.
pub async fn search_offset_by_timestamp(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<SearchOffsetByTimestampResponse>, Refusal> {
    let request = frame.header::<SearchOffsetByTimestampRequest>()?;
    let topic = request.topic.as_str().to_owned();
    let queue = request.queue_id.to_native().0;
    let timestamp_ms = request.timestamp_ms.to_native();
    let owner = shard.owner_of(&topic, queue)?;
    let offset = shard
        .run_on(owner, move |owner| async move {
            match owner
                .store
                .offset_for_timestamp(&topic, QueueId(queue), timestamp_ms)
                .await
            {
                Ok(offset) => Ok(offset.0),
                Err(StorageError::QueueNotFound { .. }) => Ok(0),
                Err(error) => Err(Refusal::from(error)),
            }
        })
        .await??;
    Ok(Response::header(SearchOffsetByTimestampResponse {
        offset: QueueOffset(offset),
    }))
}
