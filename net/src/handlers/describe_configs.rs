//! DescribeConfigs (v1–4) of topics and of this broker, as Kafka's `ConfigHelper` answers:
//! a topic lists every topic config (value, source, synonyms when asked, type from v3,
//! documentation when asked from v3); a broker resource named by this node's id lists the
//! broker-level configs sluice has; the empty name (cluster-wide dynamic defaults) lists
//! nothing, since sluice has no dynamic broker configs. `configuration_keys` filters (null or
//! empty: all). An invalid topic name gives INVALID_TOPIC_EXCEPTION, an unknown topic
//! UNKNOWN_TOPIC_OR_PARTITION, another broker id or an unsupported resource type INVALID_REQUEST.
//!
//! Owns: rendering described configs into the response. Must never: change anything.

use std::rc::Rc;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use crate::handlers::config_resources::{broker_configs, resource_type, topic_configs, DescribedConfig};
use crate::handlers::{codes, str_bytes};
use crate::shard_context::ShardContext;
use crate::topic_name::validate_topic_name;

pub async fn handle(ctx: &Rc<ShardContext>, request: DescribeConfigsRequest, _version: i16) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match describe(ctx, resource) {
                Ok(rows) => {
                    let configs = rows
                        .into_iter()
                        .filter(|row| wanted(resource, &row.name))
                        .map(|row| render(row, request.include_synonyms, request.include_documentation))
                        .collect();
                    base.with_error_code(codes::NONE).with_error_message(None).with_configs(configs)
                }
                Err((code, message)) => {
                    base.with_error_code(code).with_error_message(message.map(str_bytes)).with_configs(Vec::new())
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_throttle_time_ms(0).with_results(results)
}

fn describe(
    ctx: &ShardContext,
    resource: &DescribeConfigsResource,
) -> Result<Vec<DescribedConfig>, (i16, Option<String>)> {
    let name: &str = &resource.resource_name;
    match resource.resource_type {
        resource_type::TOPIC => {
            validate_topic_name(name).map_err(|m| (codes::INVALID_TOPIC_EXCEPTION, Some(m)))?;
            let overrides = ctx.image.borrow().topic(name).map(|t| t.configs.clone());
            // Kafka answers an unknown topic with the bare error code.
            let overrides = overrides.ok_or((codes::UNKNOWN_TOPIC_OR_PARTITION, None))?;
            Ok(topic_configs(&overrides, &ctx.config.default_log_config))
        }
        resource_type::BROKER => {
            if name.is_empty() {
                // Cluster-wide dynamic defaults: sluice has none.
                return Ok(Vec::new());
            }
            let id: i32 = name.parse().map_err(|_| {
                (codes::INVALID_REQUEST, Some(format!("Broker id must be an integer, but it is: {name}")))
            })?;
            if id != ctx.config.node_id {
                return Err((
                    codes::INVALID_REQUEST,
                    Some(format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        ctx.config.node_id
                    )),
                ));
            }
            Ok(broker_configs(&ctx.config))
        }
        other => Err((
            codes::INVALID_REQUEST,
            Some(match resource_type::unsupported_name(other) {
                Some(kind) => format!("sluice does not support {kind} config resources yet"),
                None => format!("Unsupported resource type: {other}"),
            }),
        )),
    }
}

fn wanted(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|k| k.as_str() == name),
        _ => true,
    }
}

fn render(row: DescribedConfig, include_synonyms: bool, include_documentation: bool) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        row.synonyms
            .into_iter()
            .map(|s| {
                DescribeConfigsSynonym::default()
                    .with_name(str_bytes(s.name))
                    .with_value(if row.sensitive { None } else { Some(str_bytes(s.value)) })
                    .with_source(s.source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(row.name))
        .with_value(if row.sensitive { None } else { Some(str_bytes(row.value)) })
        .with_read_only(row.read_only)
        .with_config_source(row.source)
        .with_is_sensitive(row.sensitive)
        .with_synonyms(synonyms)
        .with_config_type(row.config_type)
        .with_documentation(include_documentation.then(|| str_bytes(row.documentation)))
}
