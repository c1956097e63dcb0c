//! AlterConfigs (v0–2), the legacy API: a resource's configs are *replaced* by the request's
//! (an override left out is removed), as in Kafka's `legacyAlterConfigs`. Topic resources only:
//! a broker resource is refused with INVALID_REQUEST because sluice has no dynamic broker
//! configs yet. Kafka's checks first (`ConfigAdminManager.preprocess`): a resource twice in one
//! request, a config name twice or a null value fail with INVALID_REQUEST; then the topic name
//! (INVALID_TOPIC_EXCEPTION), existence (UNKNOWN_TOPIC_OR_PARTITION) and the new configs
//! (INVALID_CONFIG with the reason). `validate_only` checks without changing anything.
//!
//! Owns: turning a legacy AlterConfigs request into SetTopicConfigs commands. Must never:
//! change configs other than through the controller, or merge with the old overrides.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use crate::handlers::config_resources::{
    check_alter_resource, commit_topic_overrides, duplicate_resources, op, AlterItem,
};
use crate::handlers::{codes, str_bytes};
use crate::metadata_image::MetadataError;
use crate::shard_context::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: AlterConfigsRequest, _version: i16) -> AlterConfigsResponse {
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
                    op: op::SET,
                    value: c.value.as_ref().map(|v| v.to_string()),
                })
                .collect();
            match check_alter_resource(ctx, resource.resource_type, &resource.resource_name, &items, false) {
                Ok(topic) => {
                    let configs: BTreeMap<String, String> =
                        items.into_iter().filter_map(|item| item.value.map(|v| (item.name, v))).collect();
                    commit_topic_overrides(&topic, configs, request.validate_only).await
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
                tracing::info!(resource = %resource.resource_name, code = e.code, message = %e.message, "AlterConfigs refused");
                base.with_error_code(e.code).with_error_message(Some(str_bytes(e.message)))
            }
        });
    }
    AlterConfigsResponse::default().with_throttle_time_ms(0).with_responses(responses)
}
