//! A Kafka-protocol client connection on glommio: connect, negotiate versions with ApiVersions,
//! send requests pipelined (up to the caller's in-flight limit) and hand each response frame to
//! whoever sent the request, in order.
//!
//! Owns: one socket, correlation ids, the broker's advertised version ranges and the choice of
//! version per API (highest both sides support, so the bench works against Apache Kafka and
//! Redpanda as well as sluice). Must never: block the shard, accept a response frame larger
//! than [`MAX_RESPONSE_BYTES`], or lose a request's failure (a broken connection fails every
//! pending request with the reason).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::channel::oneshot;
use futures::io::{AsyncReadExt as _, AsyncWriteExt as _};
use glommio::net::TcpStream;

use crate::security::tls_stream::TlsStream;
use crate::security::transport::{Transport, TransportReader, TransportWriter};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// Largest response frame accepted (a fetch is bounded by its max_bytes, far below this).
pub const MAX_RESPONSE_BYTES: usize = 300 << 20;
/// Largest up-front allocation for encoding one request.
const MAX_REQUEST_HINT_BYTES: usize = 64 << 20;
/// Socket read buffer.
const READ_BUFFER_BYTES: usize = 256 << 10;

/// Version ranges this client can encode and decode for the APIs it uses (topic names, not
/// topic ids: Produce ≤ 12 and Fetch ≤ 12 still carry names).
pub const CLIENT_API_RANGES: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::ApiVersions, 0, 3),
    // Consumer groups (`group_member`): JoinGroup from v4 (MEMBER_ID_REQUIRED), LeaveGroup from
    // v3 (member list), OffsetFetch up to v7 (one group per request), OffsetCommit up to v8
    // (v9 is for KIP-848 groups).
    (ApiKey::FindCoordinator, 1, 6),
    (ApiKey::JoinGroup, 4, 9),
    (ApiKey::SyncGroup, 3, 5),
    (ApiKey::Heartbeat, 1, 4),
    (ApiKey::LeaveGroup, 3, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    // Transactions (`transaction`): AddPartitionsToTxn in its client form (v4+ are the brokers'
    // batched form) and EndTxn below v5 (no KIP-890 epoch bump per transaction).
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 4),
];

/// The highest version both sides support, if any.
pub fn pick_version(ours: (i16, i16), broker: Option<(i16, i16)>) -> Option<i16> {
    let (bmin, bmax) = broker?;
    let lo = ours.0.max(bmin);
    let hi = ours.1.min(bmax);
    (lo <= hi).then_some(hi)
}

type ResponseSender = oneshot::Sender<Result<Bytes, String>>;
pub type ResponseReceiver = oneshot::Receiver<Result<Bytes, String>>;

struct Shared {
    pending: VecDeque<(i32, ResponseSender)>,
    /// Why the connection is unusable, once it is.
    broken: Option<String>,
}

pub struct KafkaConnection {
    pub addr: String,
    writer: futures::lock::Mutex<TransportWriter>,
    shared: Rc<RefCell<Shared>>,
    next_correlation_id: Cell<i32>,
    broker_ranges: HashMap<i16, (i16, i16)>,
    client_id: StrBytes,
    /// Dropping the connection cancels its reader, which closes the socket.
    _reader: glommio::Task<()>,
}

impl KafkaConnection {
    /// Connects and negotiates versions.
    pub async fn connect(addr: &str, client_id: &str) -> Result<KafkaConnection, String> {
        KafkaConnection::connect_with(addr, client_id, None).await
    }

    /// Connects over TLS when `tls` is given (the server name is `addr`'s host, checked
    /// against its certificate), and negotiates versions.
    pub async fn connect_with(
        addr: &str,
        client_id: &str,
        tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
    ) -> Result<KafkaConnection, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let transport = match tls {
            None => Transport::Plain(stream),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).trim_start_matches('[').trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
                let handshake = TlsStream::connect(stream, config.clone(), name);
                Transport::Tls(handshake.await.map_err(|e| format!("TLS handshake with {addr}: {e}"))?)
            }
        };
        let (reader, writer) = transport.split();
        let shared = Rc::new(RefCell::new(Shared { pending: VecDeque::new(), broken: None }));
        let reader_task = glommio::spawn_local(read_responses(reader, shared.clone()));
        let mut conn = KafkaConnection {
            addr: addr.to_string(),
            writer: futures::lock::Mutex::new(writer),
            shared,
            next_correlation_id: Cell::new(1),
            broker_ranges: HashMap::new(),
            client_id: StrBytes::from_string(client_id.to_string()),
            _reader: reader_task,
        };
        conn.broker_ranges = conn.api_versions().await?;
        Ok(conn)
    }

    async fn api_versions(&self) -> Result<HashMap<i16, (i16, i16)>, String> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sluice-bench"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know v3 answers with a v0 error body (KIP-511).
        let frame = self.send_and_wait(&request, 3).await?;
        let response = match decode_response::<ApiVersionsRequest>(frame, 3) {
            Ok(r) if r.error_code == 0 => r,
            _ => {
                let frame = self.send_and_wait(&ApiVersionsRequest::default(), 0).await?;
                decode_response::<ApiVersionsRequest>(frame, 0)?
            }
        };
        if response.error_code != 0 {
            return Err(format!("ApiVersions error {}", response.error_code));
        }
        Ok(response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect())
    }

    /// The version to use for `api`, or why there is none.
    pub fn version_for(&self, api: ApiKey) -> Result<i16, String> {
        let ours = CLIENT_API_RANGES
            .iter()
            .find(|(k, _, _)| *k == api)
            .map(|(_, lo, hi)| (*lo, *hi))
            .ok_or_else(|| format!("{api:?} is not used by this client"))?;
        let broker = self.broker_ranges.get(&(api as i16)).copied();
        pick_version(ours, broker)
            .ok_or_else(|| format!("{api:?}: broker {} supports {broker:?}, this client {ours:?}", self.addr))
    }

    /// Writes `request`; returns the receiver of its response frame, or `None` when no
    /// response is expected (acks=0 produce).
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        expect_response: bool,
        size_hint_bytes: usize,
    ) -> Result<Option<ResponseReceiver>, String> {
        if let Some(reason) = &self.shared.borrow().broken {
            return Err(reason.clone());
        }
        let correlation_id = self.next_correlation_id.get();
        self.next_correlation_id.set(correlation_id.wrapping_add(1));
        let api = ApiKey::try_from(R::KEY).map_err(|_| format!("unknown api key {}", R::KEY))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        // Sized up front: growing a megabyte request by doubling would copy it several times.
        let mut buf = BytesMut::with_capacity(size_hint_bytes.clamp(256, MAX_REQUEST_HINT_BYTES));
        buf.put_i32(0);
        header.encode(&mut buf, api.request_header_version(version)).map_err(|e| format!("encode header: {e}"))?;
        request.encode(&mut buf, version).map_err(|e| format!("encode {api:?} v{version}: {e}"))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let mut writer = self.writer.lock().await;
        let receiver = if expect_response {
            let (tx, rx) = oneshot::channel();
            self.shared.borrow_mut().pending.push_back((correlation_id, tx));
            Some(rx)
        } else {
            None
        };
        // TLS holds the last records until flushed (a no-op on a plain socket).
        let written = match writer.write_all(&buf).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let reason = format!("write to {}: {e}", self.addr);
            fail_all(&self.shared, &reason);
            return Err(reason);
        }
        Ok(receiver)
    }

    async fn send_and_wait<R: Request>(&self, request: &R, version: i16) -> Result<Bytes, String> {
        let rx = self.send(request, version, true, 256).await?.expect("a response is expected");
        rx.await.map_err(|_| "connection closed".to_string())?
    }

    /// Sends `request` at `version` — which the broker must support — and decodes the
    /// response (for APIs whose client and broker forms differ by version, such as
    /// AddPartitionsToTxn v4+).
    pub async fn call_at<R: Request>(&self, request: &R, version: i16) -> Result<R::Response, String> {
        match self.broker_ranges.get(&R::KEY).copied() {
            Some((lo, hi)) if (lo..=hi).contains(&version) => {}
            range => return Err(format!("api {} v{version}: broker {} supports {range:?}", R::KEY, self.addr)),
        }
        let frame = self.send_and_wait(request, version).await?;
        decode_response::<R>(frame, version)
    }

    /// Sends `request` at the negotiated version and decodes the response.
    pub async fn call<R: Request>(&self, request: &R) -> Result<R::Response, String> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| "unknown api key".to_string())?;
        let version = self.version_for(api)?;
        let frame = self.send_and_wait(request, version).await?;
        decode_response::<R>(frame, version)
    }
}

/// Decodes a response frame (header and body) of `R` at `version`.
pub fn decode_response<R: Request>(mut frame: Bytes, version: i16) -> Result<R::Response, String> {
    let header_version = <R::Response as HeaderVersion>::header_version(version);
    ResponseHeader::decode(&mut frame, header_version).map_err(|e| format!("response header: {e}"))?;
    R::Response::decode(&mut frame, version).map_err(|e| format!("decode response v{version}: {e}"))
}

fn fail_all(shared: &Rc<RefCell<Shared>>, reason: &str) {
    let mut s = shared.borrow_mut();
    if s.broken.is_none() {
        s.broken = Some(reason.to_string());
    }
    for (_, tx) in s.pending.drain(..) {
        let _ = tx.send(Err(reason.to_string()));
    }
}

async fn read_responses(reader: TransportReader, shared: Rc<RefCell<Shared>>) {
    let mut reader = futures::io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    loop {
        let mut size = [0u8; 4];
        if let Err(e) = reader.read_exact(&mut size).await {
            let pending = !shared.borrow().pending.is_empty();
            fail_all(&shared, &format!("connection closed ({e})"));
            if pending {
                tracing::debug!("connection closed with requests pending");
            }
            return;
        }
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_RESPONSE_BYTES {
            fail_all(&shared, &format!("response size {size} outside [4, {MAX_RESPONSE_BYTES}]"));
            return;
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if let Err(e) = reader.read_exact(&mut frame).await {
            fail_all(&shared, &format!("truncated response: {e}"));
            return;
        }
        let frame = frame.freeze();
        let correlation_id = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
        let next = shared.borrow_mut().pending.pop_front();
        match next {
            Some((expected, tx)) if expected == correlation_id => {
                let _ = tx.send(Ok(frame));
            }
            Some((expected, tx)) => {
                let reason = format!("response correlation id {correlation_id}, expected {expected}");
                let _ = tx.send(Err(reason.clone()));
                fail_all(&shared, &reason);
                return;
            }
            None => {
                fail_all(&shared, &format!("unsolicited response {correlation_id}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_the_highest_common() {
        assert_eq!(pick_version((3, 11), Some((0, 11))), Some(11));
        assert_eq!(pick_version((3, 11), Some((0, 9))), Some(9));
        assert_eq!(pick_version((4, 12), Some((4, 17))), Some(12));
        assert_eq!(pick_version((4, 12), Some((0, 3))), None);
        assert_eq!(pick_version((1, 7), None), None);
    }

    #[test]
    fn a_known_tag_outside_its_versions_is_skipped_like_an_unknown_one() {
        // A peer broker answered Fetch v12 with tag 0 (node_endpoints, a v16+ field); the
        // bench reported "Tag 0 is not valid for version 12" and 0 consumed. Such tags are now
        // kept as unknown ones (third_party/kafka-protocol, `sluice patch`).
        use kafka_protocol::messages::FetchRequest;
        let mut frame = BytesMut::new();
        frame.put_i32(9); // correlation id
        frame.put_u8(0); // response header v1: no tagged fields
        frame.put_i32(0); // throttle_time_ms
        frame.put_i16(0); // error_code
        frame.put_i32(7); // session_id
        frame.put_u8(1); // responses: compact array of 0
        frame.put_u8(2); // two tagged fields
        frame.extend_from_slice(&[0, 1, 1]); // tag 0, 1 byte: an empty node_endpoints array
        frame.extend_from_slice(&[5, 2, 0xab, 0xcd]); // tag 5, unknown to every version
        let response = decode_response::<FetchRequest>(frame.freeze(), 12).expect("decodes");
        assert_eq!(response.session_id, 7);
        assert!(response.node_endpoints.is_empty());
        assert_eq!(response.unknown_tagged_fields.len(), 2);
    }
}
