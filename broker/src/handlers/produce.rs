//! `Produce`: split a request by the shard owning each part's queue, append every part on
//! its owner, answer once all of them are durable per the flush mode.
//!
//! The payload is never copied or re-encoded on the way: each part is a `Bytes` slice of
//! the received frame, handed to its owner (across a channel if needed), where the storage
//! engine validates, stamps and writes it. A part's failure (unknown topic, bad record,
//! disk full) is that part's error code in the response; the other parts still land. The
//! frame itself fails only when its header or part layout is unreadable.
//!
//! `FlushExpectation::Sync` asks for an fdatasync before the acknowledgement. A broker
//! running `flush = "sync"` always does that; one running `async` cannot for a single
//! request, and says so (`InvalidArgument`) rather than acknowledge weaker durability than
//! was asked for.

use std::rc::Rc;

use bytes::Bytes;
use spillway_storage::FlushMode;
use spillway_wire::message::{
    ArchivedFlushExpectation, ProducePartResult, ProduceRequest, ProduceResponse,
};
use spillway_wire::{ErrorCode, Frame, QueueOffset, ShardId};

use crate::connection::Response;
use crate::handlers::topics::auto_create;
use crate::refusal::Refusal;
use crate::shard::Shard;

/// One part on its way to its owner.
enum Pending {
    Refused(Refusal),
    Appending(glommio::Task<Result<spillway_storage::AppendOutcome, Refusal>>),
}

/// Handles a produce request.
pub async fn produce(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<ProduceResponse>, Refusal> {
    let request = frame.header::<ProduceRequest>()?;
    let parts = request.split_payload(frame.payload())?;
    if request.flush == ArchivedFlushExpectation::Sync
        && shard.config.storage.flush != FlushMode::Sync
    {
        return Err(Refusal::new(
            ErrorCode::InvalidArgument,
            "this broker flushes asynchronously (flush = \"async\") and cannot sync one \
             request; send with the broker's default flush",
        ));
    }
    let mut pending = Vec::with_capacity(parts.len());
    for part in &parts {
        let topic = part.part.topic.as_str();
        let queue = part.part.queue_id.to_native().0;
        let owner = match owner_creating_topic(shard, topic, queue).await {
            Ok(owner) => owner,
            Err(refusal) => {
                pending.push(Pending::Refused(refusal));
                continue;
            }
        };
        let appended = append_on(
            shard.clone(),
            owner,
            topic.to_owned(),
            queue,
            part.batch.clone(),
        );
        // Started in order, so parts for one queue are appended in request order.
        pending.push(Pending::Appending(glommio::spawn_local(appended)));
    }
    let mut results = Vec::with_capacity(pending.len());
    for part in pending {
        let result = match part {
            Pending::Refused(refusal) => Err(refusal),
            Pending::Appending(task) => task.await,
        };
        results.push(match result {
            Ok(outcome) => ProducePartResult {
                error_code: ErrorCode::Ok.as_u16(),
                first_offset: QueueOffset(outcome.first_offset.0),
                record_count: outcome.record_count,
            },
            Err(refusal) => {
                tracing::debug!(%refusal, "produce part refused");
                ProducePartResult {
                    error_code: refusal.code.as_u16(),
                    first_offset: QueueOffset(0),
                    record_count: 0,
                }
            }
        });
    }
    Ok(Response::header(ProduceResponse { parts: results }))
}

/// Appends one part on its owning shard.
async fn append_on(
    shard: Rc<Shard>,
    owner: ShardId,
    topic: String,
    queue: u32,
    batch: Bytes,
) -> Result<spillway_storage::AppendOutcome, Refusal> {
    shard
        .run_on(owner, move |owner| async move {
            owner.append_here(&topic, queue, &batch).await
        })
        .await?
}

/// The owner of the part's queue, creating the topic first if the broker auto-creates.
async fn owner_creating_topic(
    shard: &Rc<Shard>,
    topic: &str,
    queue: u32,
) -> Result<ShardId, Refusal> {
    match shard.owner_of(topic, queue) {
        Err(refusal)
            if refusal.code == ErrorCode::TopicNotFound && shard.config.auto_create_topics =>
        {
            auto_create(shard, topic).await?;
            shard.owner_of(topic, queue)
        }
        other => other,
    }
}
