//! DescribeCluster (v0–1): the cluster id, the controller (this node; in a cluster the active
//! one) and the brokers (this node at its advertised host and port; in a cluster every
//! unfenced registered broker), as Kafka's `AuthHelper.computeDescribeClusterResponse`
//! answers on a broker endpoint: v1 asking for controllers (endpoint type 2) gets
//! MISMATCHED_ENDPOINT_TYPE, an unknown endpoint type UNSUPPORTED_ENDPOINT_TYPE. Cluster
//! authorized operations are always "not provided" (i32::MIN): sluice has no authorizer yet.
//!
//! Owns: the response. Must never: change anything.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use crate::handlers::config_resources::admin_codes;
use crate::handlers::{codes, str_bytes};
use crate::shard_context::ShardContext;

/// `EndpointType` ids.
pub const ENDPOINT_BROKER: i8 = 1;
pub const ENDPOINT_CONTROLLER: i8 = 2;

/// Kafka's "authorized operations not provided" marker.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// `listener`: the one the request came in on; brokers are listed at its endpoints.
pub async fn handle(
    ctx: &Rc<ShardContext>,
    request: DescribeClusterRequest,
    version: i16,
    listener: &str,
) -> DescribeClusterResponse {
    // endpoint_type exists from v1; v0 requests always mean brokers.
    let requested = if version >= 1 { request.endpoint_type } else { ENDPOINT_BROKER };
    let error = |code: i16, message: String| {
        DescribeClusterResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
    };
    match requested {
        ENDPOINT_BROKER => {}
        ENDPOINT_CONTROLLER => {
            return error(
                admin_codes::MISMATCHED_ENDPOINT_TYPE,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                    .into(),
            )
        }
        other => return error(admin_codes::UNSUPPORTED_ENDPOINT_TYPE, format!("Unsupported endpoint type {other}")),
    }
    let brokers = crate::handlers::cluster_brokers::brokers(ctx, listener)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_throttle_time_ms(0)
        .with_error_code(codes::NONE)
        .with_error_message(None)
        .with_endpoint_type(ENDPOINT_BROKER)
        .with_cluster_id(str_bytes(ctx.image.borrow().cluster_id.clone()))
        .with_controller_id(BrokerId(crate::handlers::cluster_brokers::controller_id(ctx)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}
