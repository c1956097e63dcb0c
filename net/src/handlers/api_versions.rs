//! ApiVersions: advertises exactly [`crate::supported_apis::SUPPORTED_APIS`] (less the
//! consumer-protocol APIs when `group.coordinator.rebalance.protocols` leaves `consumer` out). An unsupported
//! ApiVersions version is answered in the v0 format with UNSUPPORTED_VERSION and the supported
//! list (KIP-511), so the client can retry with a version we speak.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;

use crate::handlers::codes;
use crate::supported_apis::{needs_consumer_protocol, SUPPORTED_APIS};

fn api_keys() -> Vec<ApiVersion> {
    // `group.coordinator.rebalance.protocols` without `consumer` hides the KIP-848 APIs.
    let consumer_protocol =
        crate::shard_context::ShardContext::try_current().is_none_or(|c| c.config.group.consumer_protocol_enabled);
    SUPPORTED_APIS
        .iter()
        .filter(|(key, _, _)| consumer_protocol || !needs_consumer_protocol(*key))
        .map(|(key, min, max)| {
            ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max)
        })
        .collect()
}

pub fn handle(_request: &ApiVersionsRequest, _version: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_error_code(codes::NONE).with_api_keys(api_keys()).with_throttle_time_ms(0)
}

/// The whole framed v0 response (header v0 + body v0) for an unsupported ApiVersions version.
pub fn unsupported_version_response(correlation_id: i32) -> BytesMut {
    let body = ApiVersionsResponse::default().with_error_code(codes::UNSUPPORTED_VERSION).with_api_keys(api_keys());
    let mut out = BytesMut::with_capacity(128);
    out.put_i32(0);
    out.put_i32(correlation_id);
    body.encode(&mut out, 0).expect("v0 ApiVersions always encodes");
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out
}
