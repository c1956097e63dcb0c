//! A blocking Kafka-protocol connection for the CLI: one request at a time over a std
//! `TcpStream`, versions negotiated with ApiVersions, codecs from the `kafka-protocol` crate.
//! A CLI makes a handful of sequential calls, so blocking I/O keeps every command a straight
//! line of code (the bench's glommio connection pipelines; the CLI has nothing to pipeline).
//!
//! Owns: one socket, correlation ids, the broker's advertised version ranges and the version
//! picked per API (highest both sides support, so the CLI works against Apache Kafka and
//! Redpanda as well as sluice). Must never: wait without a bound (connect and every read time
//! out), accept a response frame larger than [`MAX_RESPONSE_BYTES`], or take a response whose
//! correlation id is not the request's.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use sluice_net::kafka_client::{decode_response, pick_version};

use crate::error::{CliError, CliResult};

/// Largest response frame accepted (a fetch asks for at most [`crate::console_consume`]'s
/// 16 MiB; metadata of many topics is far smaller).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than any broker-side wait the CLI asks for (JoinGroup waits up to the rebalance
/// timeout, 30 s, in [`crate::membership`]).
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Version ranges the CLI encodes and decodes: topic names rather than ids (Produce ≤ 11,
/// Fetch ≤ 12), FindCoordinator in both its single-key (≤ 3) and batched (4+) forms.
pub const CLI_API_RANGES: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::FindCoordinator, 1, 6),
    (ApiKey::JoinGroup, 4, 9),
    (ApiKey::SyncGroup, 3, 5),
    (ApiKey::Heartbeat, 1, 4),
    (ApiKey::LeaveGroup, 3, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::ConsumerGroupDescribe, 0, 1),
];

pub struct Connection {
    pub addr: String,
    stream: TcpStream,
    next_correlation_id: i32,
    /// API key → (min, max) the broker advertised.
    broker_ranges: BTreeMap<i16, (i16, i16)>,
}

impl Connection {
    /// Connects to `addr` ("host:port") and negotiates versions.
    pub fn connect(addr: &str) -> CliResult<Connection> {
        let unreachable = |e: String| {
            CliError::kafka(format!(
                "cannot connect to {addr}: {e}; is a broker running there? pass its address with --bootstrap HOST:PORT"
            ))
        };
        let sockets: Vec<_> = addr.to_socket_addrs().map_err(|e| unreachable(e.to_string()))?.collect();
        let mut last = "no address".to_string();
        let mut stream = None;
        for socket in sockets {
            match TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let stream = stream.ok_or_else(|| unreachable(last))?;
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| unreachable(e.to_string()))?;
        stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut conn =
            Connection { addr: addr.to_string(), stream, next_correlation_id: 1, broker_ranges: BTreeMap::new() };
        conn.negotiate()?;
        Ok(conn)
    }

    fn negotiate(&mut self) -> CliResult<()> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-cli"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know v3 answers with a v0 error body (KIP-511).
        let response = match self.round_trip(&request, 3) {
            Ok(r) if r.error_code == 0 => r,
            _ => self.round_trip(&ApiVersionsRequest::default(), 0)?,
        };
        if response.error_code != 0 {
            return Err(crate::error::kafka_error(&format!("ApiVersions to {}", self.addr), response.error_code, None));
        }
        self.broker_ranges = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    /// Every API the broker advertised: key → (min, max).
    pub fn broker_ranges(&self) -> &BTreeMap<i16, (i16, i16)> {
        &self.broker_ranges
    }

    /// The version the CLI uses for `api` with this broker.
    pub fn version(&self, api: ApiKey) -> CliResult<i16> {
        let ours = CLI_API_RANGES
            .iter()
            .find(|(k, _, _)| *k == api)
            .map(|(_, lo, hi)| (*lo, *hi))
            .expect("every API the CLI calls is in CLI_API_RANGES");
        let broker = self.broker_ranges.get(&(api as i16)).copied();
        pick_version(ours, broker).ok_or_else(|| {
            CliError::kafka(match broker {
                None => format!("the broker at {} does not support {api:?}", self.addr),
                Some((lo, hi)) => format!(
                    "{api:?}: the broker at {} supports versions {lo}-{hi}, this CLI {}-{}",
                    self.addr, ours.0, ours.1
                ),
            })
        })
    }

    /// Sends `request` at the negotiated version; returns (version, response).
    pub fn call_versioned<R: Request>(&mut self, request: &R) -> CliResult<(i16, R::Response)> {
        let api = ApiKey::try_from(R::KEY).expect("a known API key");
        let version = self.version(api)?;
        Ok((version, self.round_trip(request, version)?))
    }

    /// Sends `request` at the negotiated version and decodes the response.
    pub fn call<R: Request>(&mut self, request: &R) -> CliResult<R::Response> {
        Ok(self.call_versioned(request)?.1)
    }

    /// Sends `request` at the negotiated version without waiting for an answer (Produce with
    /// acks=0, which the broker does not answer).
    pub fn send_only<R: Request>(&mut self, request: &R) -> CliResult<()> {
        let api = ApiKey::try_from(R::KEY).expect("a known API key");
        let version = self.version(api)?;
        self.write_request(request, version)?;
        Ok(())
    }

    /// Writes one request frame; returns its correlation id.
    fn write_request<R: Request>(&mut self, request: &R, version: i16) -> CliResult<i32> {
        let api = ApiKey::try_from(R::KEY).expect("a known API key");
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-cli")));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        header
            .encode(&mut buf, api.request_header_version(version))
            .map_err(|e| CliError::kafka(format!("encode {api:?} header: {e}")))?;
        request.encode(&mut buf, version).map_err(|e| CliError::kafka(format!("encode {api:?} v{version}: {e}")))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| CliError::kafka(format!("{api:?} to {}: {e}", self.addr)))?;
        Ok(correlation_id)
    }

    fn round_trip<R: Request>(&mut self, request: &R, version: i16) -> CliResult<R::Response> {
        let api = ApiKey::try_from(R::KEY).expect("a known API key");
        let correlation_id = self.write_request(request, version)?;
        let io = |e: std::io::Error| CliError::kafka(format!("{api:?} to {}: {e}", self.addr));
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io)?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_RESPONSE_BYTES {
            return Err(CliError::kafka(format!("{api:?} from {}: response size {size}", self.addr)));
        }
        let mut frame = vec![0u8; size as usize];
        self.stream.read_exact(&mut frame).map_err(io)?;
        let answered = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
        if answered != correlation_id {
            return Err(CliError::kafka(format!(
                "{api:?} from {}: correlation id {answered}, expected {correlation_id}",
                self.addr
            )));
        }
        decode_response::<R>(Bytes::from(frame), version).map_err(|e| CliError::kafka(format!("{api:?}: {e}")))
    }
}
