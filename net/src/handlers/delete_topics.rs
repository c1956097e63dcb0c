//! DeleteTopics (v1–6): by name (`topic_names`, v1–5; `topics[].name`, v6) or by topic id
//! (v6), with Kafka's checks (`ControllerApis.deleteTopics`): an entry with neither or both of
//! name and id, and a name or id repeated in one request, fail with INVALID_REQUEST; an
//! unknown name with UNKNOWN_TOPIC_OR_PARTITION, an unknown id with UNKNOWN_TOPIC_ID. The
//! controller's DeleteTopic removes the topic from the image and every partition's files.
//!
//! Owns: resolving the request's names and ids to topics. Must never: delete a topic other
//! than through [`controller::submit`], or delete anything for an entry that failed a check.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use crate::controller;
use crate::handlers::config_resources::internal_to_unknown_server_error;
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::MetadataCommand;
use crate::shard_context::ShardContext;

/// Kafka's messages for the two "unknown" errors (`Errors.*.message()`).
const UNKNOWN_TOPIC_MESSAGE: &str = "This server does not host this topic-partition.";
const UNKNOWN_TOPIC_ID_MESSAGE: &str = "This server does not host this topic ID.";

/// One entry of the request, after the checks that need no lookup.
enum Entry {
    Done(DeletableTopicResult),
    /// Resolved to an existing topic (name, id, given by id); deleted unless another entry
    /// claims the same id.
    Delete(String, Uuid, bool),
    /// A repeated name or id already answered by its first copy.
    Skip,
}

pub async fn handle(ctx: &Rc<ShardContext>, request: DeleteTopicsRequest, _version: i16) -> DeleteTopicsResponse {
    // v1–5 send names; v6 sends (name | id) pairs. Each codec version decodes only its own field.
    let requested: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), Uuid::nil()))
        .chain(request.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)))
        .collect();
    let mut name_counts: HashMap<&str, usize> = HashMap::new();
    let mut id_counts: HashMap<Uuid, usize> = HashMap::new();
    for (name, id) in &requested {
        match (name, id.is_nil()) {
            (Some(name), true) => *name_counts.entry(name.as_str()).or_default() += 1,
            (None, false) => *id_counts.entry(*id).or_default() += 1,
            _ => {}
        }
    }

    let mut answered_duplicates: Vec<(Option<String>, Uuid)> = Vec::new();
    let mut entries = Vec::with_capacity(requested.len());
    for (name, id) in &requested {
        let entry = match (name, id.is_nil()) {
            (None, true) => Entry::Done(result(
                None,
                Uuid::nil(),
                codes::INVALID_REQUEST,
                Some("Neither topic name nor id were specified.".into()),
            )),
            (Some(name), false) => Entry::Done(result(
                Some(name.clone()),
                *id,
                codes::INVALID_REQUEST,
                Some("You may not specify both topic name and topic id.".into()),
            )),
            (Some(name), true) if name_counts[name.as_str()] > 1 => {
                let key = (Some(name.clone()), Uuid::nil());
                if answered_duplicates.contains(&key) {
                    Entry::Skip
                } else {
                    answered_duplicates.push(key);
                    Entry::Done(result(
                        Some(name.clone()),
                        Uuid::nil(),
                        codes::INVALID_REQUEST,
                        Some("Duplicate topic name.".into()),
                    ))
                }
            }
            (None, false) if id_counts[id] > 1 => {
                let key = (None, *id);
                if answered_duplicates.contains(&key) {
                    Entry::Skip
                } else {
                    answered_duplicates.push(key);
                    Entry::Done(result(None, *id, codes::INVALID_REQUEST, Some("Duplicate topic id.".into())))
                }
            }
            (Some(name), true) => match ctx.image.borrow().topic(name) {
                Some(meta) => Entry::Delete(name.clone(), Uuid::from_bytes(meta.id), false),
                None => Entry::Done(result(
                    Some(name.clone()),
                    Uuid::nil(),
                    codes::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(UNKNOWN_TOPIC_MESSAGE.into()),
                )),
            },
            (None, false) => match ctx.image.borrow().topic_by_id(id.as_bytes()) {
                Some((name, _)) => Entry::Delete(name.clone(), *id, true),
                None => Entry::Done(result(None, *id, codes::UNKNOWN_TOPIC_ID, Some(UNKNOWN_TOPIC_ID_MESSAGE.into()))),
            },
        };
        entries.push(entry);
    }

    // A name that resolves to an id also given directly: Kafka refuses that pair.
    let mut claims: HashMap<Uuid, usize> = HashMap::new();
    for entry in &entries {
        if let Entry::Delete(_, id, _) = entry {
            *claims.entry(*id).or_default() += 1;
        }
    }

    let mut responses = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            Entry::Skip => {}
            Entry::Done(r) => responses.push(r),
            Entry::Delete(name, id, _) if claims[&id] > 1 => responses.push(result(
                Some(name),
                id,
                codes::INVALID_REQUEST,
                Some("The provided topic name maps to an ID that was already supplied.".into()),
            )),
            Entry::Delete(name, id, by_id) => {
                let outcome = controller::submit(MetadataCommand::DeleteTopic { name: name.clone() }).await;
                match outcome.map_err(internal_to_unknown_server_error) {
                    Ok(()) => {
                        tracing::info!(topic = %name, "topic deleted");
                        responses.push(result(Some(name), id, codes::NONE, None));
                    }
                    // Deleted concurrently: answer as for an unknown id when asked by id.
                    Err(e) if by_id && e.code == codes::UNKNOWN_TOPIC_OR_PARTITION => {
                        responses.push(result(None, id, codes::UNKNOWN_TOPIC_ID, Some(UNKNOWN_TOPIC_ID_MESSAGE.into())))
                    }
                    Err(e) => responses.push(result(Some(name), id, e.code, Some(e.message))),
                }
            }
        }
    }
    DeleteTopicsResponse::default().with_throttle_time_ms(0).with_responses(responses)
}

fn result(name: Option<String>, id: Uuid, code: i16, message: Option<String>) -> DeletableTopicResult {
    DeletableTopicResult::default()
        .with_name(name.map(|n| TopicName(str_bytes(n))))
        .with_topic_id(id)
        .with_error_code(code)
        .with_error_message(message.map(str_bytes))
}
