//! Topic administration: create, delete, list, and auto-creation on produce.
//!
//! Every change is decided on shard 0 ([`Shard::change_topics`]): checked against its
//! table, saved to `topics.json`, applied on every shard, and then the name servers hear
//! of it (registration re-registers on `topics_changed`). Lists are answered from the
//! local copy. Deleting a topic stops produce and pull on it and drops its consumer
//! offsets; its messages stay in the commit logs until retention removes their segments,
//! and a topic created again under the same name continues the old queues' offsets (the
//! storage engine's queues are not deleted).

use std::rc::Rc;

use spillway_wire::message::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    ListTopicsRequest, ListTopicsResponse, TopicConfig,
};
use spillway_wire::{ErrorCode, Frame, ShardId};

use crate::connection::Response;
use crate::refusal::Refusal;
use crate::shard::Shard;
use crate::topic_table::{TopicChange, TopicTableError};

fn refusal(error: TopicTableError) -> Refusal {
    Refusal::new(error.error_code(), error.to_string())
}

fn master_only(shard: &Shard) -> Result<(), Refusal> {
    if shard.config.is_master() {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::NotMaster,
            "topics are created and deleted on the master (broker_id 0)",
        ))
    }
}

/// Handles `CreateTopic`.
pub async fn create_topic(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<CreateTopicResponse>, Refusal> {
    master_only(shard)?;
    let request = frame.deserialize_header::<CreateTopicRequest>()?;
    let config: TopicConfig = request.config;
    shard
        .run_on(ShardId(0), move |shard| async move {
            let shard_count = shard.shard_count;
            shard
                .change_topics(move |table| {
                    table
                        .check_create(&config, shard_count)
                        .map(TopicChange::Created)
                        .map_err(refusal)
                })
                .await
                .map(|change| tracing::info!(?change, "topic created"))
        })
        .await??;
    Ok(Response::header(CreateTopicResponse {}))
}

/// Handles `DeleteTopic`.
pub async fn delete_topic(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<DeleteTopicResponse>, Refusal> {
    master_only(shard)?;
    let request = frame.header::<DeleteTopicRequest>()?;
    let topic = request.topic.as_str().to_owned();
    let deleting = topic.clone();
    shard
        .run_on(ShardId(0), move |shard| async move {
            shard
                .change_topics(move |table| table.check_delete(&deleting).map_err(refusal))
                .await
                .map(|change| tracing::info!(?change, "topic deleted"))
        })
        .await??;
    // No shard's table has the topic now, so no new append reaches its queues: delete them
    // from every shard's store (a new topic of the same name starts at offset 0). A broker
    // that stops before this is done finishes it when it starts (`server::open_shard`).
    for target in 0..shard.shard_count {
        let topic = topic.clone();
        shard
            .run_on(ShardId(target), move |owner| async move {
                owner.store.delete_topic(&topic).await
            })
            .await??;
    }
    Ok(Response::header(DeleteTopicResponse {}))
}

/// Handles `ListTopics`, from this shard's copy of the table.
pub fn list_topics(
    shard: &Rc<Shard>,
    frame: &Frame,
) -> Result<Response<ListTopicsResponse>, Refusal> {
    frame.header::<ListTopicsRequest>()?;
    Ok(Response::header(ListTopicsResponse {
        topics: shard.topics.borrow().wire_topics(),
    }))
}

/// Creates `topic` with `auto_create_queues` round-robin queues (a produce found it
/// missing and the broker auto-creates). Someone else creating it first is fine.
pub async fn auto_create(shard: &Rc<Shard>, topic: &str) -> Result<(), Refusal> {
    master_only(shard)?;
    let topic = topic.to_owned();
    let queue_count = shard.config.auto_create_queues;
    shard
        .run_on(ShardId(0), move |shard| async move {
            let created = shard
                .change_topics(|table| {
                    table
                        .auto_create_entry(&topic, queue_count)
                        .map(TopicChange::Created)
                        .map_err(refusal)
                })
                .await;
            match created {
                Ok(change) => {
                    tracing::info!(?change, "topic auto-created");
                    Ok(())
                }
                Err(refusal) if refusal.code == ErrorCode::TopicExists => Ok(()),
                Err(refusal) => Err(refusal),
            }
        })
        .await?
}
