//! IncrementalAlterConfigs (v0–1): per-config SET (0), DELETE (1), APPEND (2) and SUBTRACT (3)
//! on a topic's overrides, as Kafka's `incrementalAlterConfigResource`: APPEND adds the
//! comma-separated values a LIST config (e.g. `cleanup.policy`) lacks, SUBTRACT removes them,
//! both starting from the config's current value; other types give INVALID_CONFIG. The
//! resulting override map is validated as a whole (INVALID_CONFIG with the reason) and
//! committed, or only validated with `validate_only`. Kafka's request checks come first (see
//! [`check_alter_resource`]); a broker resource is refused with INVALID_REQUEST because sluice
//! has no dynamic broker configs yet.
//!
//! Owns: computing a topic's new overrides from the operations. Must never: change configs
//! other than through the controller, or commit a partially applied resource.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use sluice_engine::log_config::{ConfigType, LogConfig};

use crate::controller;
use crate::handlers::config_resources::{
    admin_codes, check_alter_resource, duplicate_resources, effective_topic_config, internal_to_unknown_server_error,
    op, topic_config_type, AlterItem,
};
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::MetadataError;
use crate::shard_context::ShardContext;

pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let duplicates = duplicate_resources(request.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str())));
    let mut responses = Vec::with_capacity(request.resources.len());
    for (index, resource) in request.resources.iter().enumerate() {
        let outcome = if duplicates.contains(&index) {
            Err(MetadataError {
                code: codes::INVALID_REQUEST,
                message: "Each resource must appear at most once.".into(),
            })
        } else {
            let items: Vec<AlterItem> = resource
                .configs
                .iter()
                .map(|c| AlterItem {
                    name: c.name.to_string(),
                    op: c.config_operation,
                    value: c.value.as_ref().map(|v| v.to_string()),
                })
                .collect();
            match check_alter_resource(ctx, resource.resource_type, &resource.resource_name, &items, true) {
                // The read-modify-write runs on the controller shard under its lock, so
                // concurrent alters of one topic never lose each other's changes.
                Ok(topic) => {
                    controller::update_topic_configs(topic, request.validate_only, move |current, defaults| {
                        apply_ops(current, &items, defaults)
                    })
                    .await
                    .map_err(internal_to_unknown_server_error)
                }
                Err(e) => Err(e),
            }
        };
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        responses.push(match outcome {
            Ok(()) => base.with_error_code(codes::NONE).with_error_message(None),
            Err(e) => {
                tracing::info!(
                    resource = %resource.resource_name, code = e.code, message = %e.message,
                    "IncrementalAlterConfigs refused"
                );
                base.with_error_code(e.code).with_error_message(Some(str_bytes(e.message)))
            }
        });
    }
    IncrementalAlterConfigsResponse::default().with_throttle_time_ms(0).with_responses(responses)
}

/// The overrides after applying `items` in order (names are unique: checked before).
fn apply_ops(
    current: &BTreeMap<String, String>,
    items: &[AlterItem],
    broker_defaults: &LogConfig,
) -> Result<BTreeMap<String, String>, MetadataError> {
    let invalid_config = |message: String| MetadataError { code: admin_codes::INVALID_CONFIG, message };
    let mut next = current.clone();
    for item in items {
        let name = item.name.clone();
        match item.op {
            op::SET => {
                next.insert(name, item.value.clone().unwrap_or_default());
            }
            op::DELETE => {
                next.remove(&name);
            }
            op::APPEND | op::SUBTRACT => {
                let op_name = if item.op == op::APPEND { "APPEND" } else { "SUBTRACT" };
                match topic_config_type(&name) {
                    None => return Err(invalid_config(format!("Unknown topic config name: {name}"))),
                    Some(ConfigType::List) => {}
                    Some(_) => {
                        return Err(invalid_config(format!(
                            "Can't {op_name} to key {name} because its type is not LIST."
                        )))
                    }
                }
                let current_value = effective_topic_config(&next, broker_defaults).get(&name).unwrap_or_default();
                let mut parts: Vec<String> = split_list(&current_value);
                let values = split_list(item.value.as_deref().unwrap_or_default());
                if item.op == op::APPEND {
                    for value in values {
                        if !parts.contains(&value) {
                            parts.push(value);
                        }
                    }
                } else {
                    parts.retain(|part| !values.contains(part));
                }
                next.insert(name, parts.join(","));
            }
            other => {
                return Err(MetadataError {
                    code: codes::INVALID_REQUEST,
                    message: format!("Unknown operations type {other}"),
                })
            }
        }
    }
    Ok(next)
}

fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|part| !part.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, op: i8, value: Option<&str>) -> AlterItem {
        AlterItem { name: name.into(), op, value: value.map(str::to_string) }
    }

    #[test]
    fn operations_follow_kafka() {
        let defaults = LogConfig::default();
        let current: BTreeMap<String, String> = [("retention.ms".to_string(), "1000".to_string())].into();
        let next = apply_ops(
            &current,
            &[
                item("segment.bytes", op::SET, Some("4096")),
                item("retention.ms", op::DELETE, None),
                item("cleanup.policy", op::APPEND, Some("compact")),
            ],
            &defaults,
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("segment.bytes".to_string(), "4096".to_string()),
            ("cleanup.policy".to_string(), "delete,compact".to_string()),
        ]
        .into();
        assert_eq!(next, expected);
        let again =
            apply_ops(&next, &[item("cleanup.policy", op::APPEND, Some("delete, compact"))], &defaults).unwrap();
        assert_eq!(again["cleanup.policy"], "delete,compact", "APPEND adds only what is missing");
        let less = apply_ops(&next, &[item("cleanup.policy", op::SUBTRACT, Some("delete"))], &defaults).unwrap();
        assert_eq!(less["cleanup.policy"], "compact");
        let err = apply_ops(&next, &[item("retention.ms", op::APPEND, Some("5"))], &defaults).unwrap_err();
        assert_eq!(err.code, admin_codes::INVALID_CONFIG);
        assert!(err.message.contains("not LIST"), "{}", err.message);
        let err = apply_ops(&next, &[item("bogus", op::SUBTRACT, Some("5"))], &defaults).unwrap_err();
        assert_eq!(err.code, admin_codes::INVALID_CONFIG);
    }
}
