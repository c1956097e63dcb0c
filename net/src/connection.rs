//! One client connection: read a frame, decode, handle, answer — in request order.
//!
//! Owns: the socket of one connection and its framing/decoding errors. Requests are handled in
//! the order they arrive and each one's effects are in place before the next is read — a
//! Produce's appends are in the partitions' write-behind buffers, so appends from one producer
//! connection keep their order, as in Kafka. What may overlap is the *wait* for a produce
//! acknowledgement (its appends becoming durable): meanwhile the connection reads and handles
//! up to [`MAX_IN_FLIGHT_REQUESTS`] further requests, and a writer task sends the responses
//! strictly in request order. acks=0 produce gets no response.
//!
//! Client quotas ([`crate::quota`]): a Produce or Fetch of a client over its byte-rate quota is
//! answered at once with `throttle_time_ms`, and then nothing more is read from the connection
//! until that time is over (Kafka's mute, KIP-219).
//!
//! Bad input policy: an oversized, negative or truncated frame, an unknown API key, an
//! unsupported version (except ApiVersions, which gets the v0 error response of KIP-511) or an
//! undecodable body closes *this* connection with a log line; nothing else is affected.
//!
//! Must never: allocate from an unchecked size, panic on any byte sequence, or block the shard.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use std::future::Future;
use std::pin::Pin;

use futures::channel::mpsc;
use futures::io::{AsyncWriteExt as _, BufReader};
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::frame::{read_frame_reusing, FrameError};
use crate::handlers::{self, Reply};
use crate::produce_placement::ProducePlacement;
use crate::quota::resolve::QuotaKind;
use crate::quota::ConnectionQuotas;
use crate::response_buf::{FileRange, OutSegment, SegmentedBuf};
use crate::security::protocol::ConnectionSecurity;
use crate::security::request_authorization::{self, Identity, Verdict};
use crate::security::sasl_connection::{ConnectionAuth, SaslOutcome};
use crate::security::transport::{Transport, TransportWriter};
use crate::shard_context::ShardContext;
use crate::supported_apis::{decodable_min, supported_range};
use sluice_engine::watermark::Watermark;

/// Socket read buffer per connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves one connection until the peer closes it or sends something we refuse. `security`:
/// its listener and, on TLS, the client's certificate principal (SASL state goes next to it).
pub async fn serve(stream: Transport, security: ConnectionSecurity, ctx: Rc<ShardContext>) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    stream.set_nodelay(true);
    // The socket stays open while either half lives; the writer task holds its half across
    // every sendfile it runs.
    let socket_fd = stream.raw_fd();
    let (reader, writer) = stream.split();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let max_request_bytes = ctx.config.max_request_bytes;
    // Responses in request order: the reader queues each request's pending response, the
    // writer awaits and writes them in turn. The queue bounds the requests in flight.
    let (mut queue, pending) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT_REQUESTS);
    let writer_task = glommio::spawn_local(write_responses(writer, pending, socket_fd, peer.clone()));
    let mut placement = ProducePlacement::default();
    // Produces read on this connection, and how many of them are acknowledged-or-dropped (their
    // appends durable, or failed). A request that is not a produce waits for all earlier ones:
    // the high watermark follows the durable offset, so without the wait a ListOffsets or
    // Fetch right behind an acks=0 produce would not see it (Kafka's would). Consecutive
    // produces still pipeline.
    let produces_settled = Watermark::new(0);
    let mut produces_read = 0u64;
    // Who this connection is: its mTLS principal or User:ANONYMOUS, until SASL says otherwise.
    let mut identity = Rc::new(Identity { principal: security.principal().to_string(), host: stream_host(&peer) });
    let mut auth = ConnectionAuth::new(&ctx, &security);
    // The client quotas that apply to this connection's requests (crate::quota).
    let mut quotas = ConnectionQuotas::default();
    loop {
        let max_frame_bytes = auth.max_frame_bytes(max_request_bytes);
        let phase = |prefix: &[u8], size: usize| placement.phase(prefix, size);
        let frame = match read_frame_reusing(&mut reader, max_frame_bytes, phase).await {
            Ok(frame) => frame,
            Err(FrameError::Closed) => break,
            Err(e) => {
                sluice_engine::warn_limited!(%peer, error = %e, "closing connection: bad frame");
                break;
            }
        };
        let is_produce = frame.get(..2) == Some(&[0, 0]); // API key 0
        let api_key = frame.get(..2).map_or(-1, |k| i16::from_be_bytes([k[0], k[1]]));
        match auth.admit(api_key, std::time::Instant::now()) {
            Ok(false) => {}
            Ok(true) => {
                let (reply, close) = match auth.handle(&ctx, frame).await {
                    Ok(SaslOutcome::Reply(reply)) => (reply, None),
                    Ok(SaslOutcome::Authenticated { reply, principal }) => {
                        tracing::debug!(%peer, %principal, "authenticated");
                        identity = Rc::new(Identity { principal, host: identity.host.clone() });
                        (reply, None)
                    }
                    Ok(SaslOutcome::Failed { reply, reason }) => (reply, Some(reason)),
                    Err(reason) => (Vec::new(), Some(reason)),
                };
                if !reply.is_empty() && queue.send(Box::pin(std::future::ready(Ok(Some(reply))))).await.is_err() {
                    break;
                }
                if let Some(reason) = close {
                    sluice_engine::warn_limited!(%peer, %reason, "closing connection: authentication failed");
                    break;
                }
                continue;
            }
            Err(reason) => {
                sluice_engine::warn_limited!(%peer, %reason, "closing connection");
                break;
            }
        }
        if !is_produce && produces_settled.get() < produces_read {
            let _ = produces_settled.wait_for(produces_read).await;
        }
        let started = std::time::Instant::now();
        let (response, throttle_ms) =
            match process(frame, &ctx, &mut placement, &security, &identity, &mut quotas).await {
                Ok(answer) => answer,
                Err(reason) => {
                    crate::metrics::record_request(api_key, started.elapsed(), true);
                    sluice_engine::warn_limited!(%peer, %reason, "closing connection");
                    break;
                }
            };
        let response = if is_produce {
            produces_read += 1;
            settle_on_completion(response, produces_settled.clone(), produces_read)
        } else {
            response
        };
        if queue.send(response).await.is_err() {
            break; // the writer stopped (write error)
        }
        if throttle_ms > 0 {
            crate::metrics::record_quota_throttle(
                if is_produce { QuotaKind::Produce } else { QuotaKind::Fetch },
                throttle_ms,
            );
            // Over its quota: the response (with throttle_time_ms) goes out now, and nothing
            // more is read from this client until the throttle time is over (KIP-219's mute).
            glommio::timer::sleep(std::time::Duration::from_millis(throttle_ms as u64)).await;
        }
    }
    // Earlier requests still get their responses; then both halves drop and the socket closes.
    drop(queue);
    writer_task.await;
}

/// Wraps a produce's pending response so that `settled` reaches `sequence` once it completes or
/// is dropped unfinished (the writer stopped): a waiter can never wait forever.
fn settle_on_completion(response: PendingResponse, settled: Rc<Watermark>, sequence: u64) -> PendingResponse {
    struct Settle(Rc<Watermark>, u64);
    impl Drop for Settle {
        fn drop(&mut self) {
            self.0.advance(self.1);
        }
    }
    let settle = Settle(settled, sequence);
    Box::pin(async move {
        let _settle = settle;
        response.await
    })
}

/// Most requests of one connection being processed or awaiting their response.
pub const MAX_IN_FLIGHT_REQUESTS: usize = 32;

/// A response still being produced (a produce acknowledgement waiting for durability), or
/// ready. `Ok(None)`: send nothing (acks=0).
pub type PendingResponse = Pin<Box<dyn Future<Output = Result<Option<Vec<OutSegment>>, String>>>>;

async fn write_responses(
    mut writer: TransportWriter,
    mut pending: mpsc::Receiver<PendingResponse>,
    socket_fd: std::os::fd::RawFd,
    peer: String,
) {
    while let Some(response) = pending.next().await {
        let segments = match response.await {
            Ok(Some(segments)) => segments,
            Ok(None) => continue,
            Err(reason) => {
                sluice_engine::warn_limited!(%peer, %reason, "closing connection");
                break;
            }
        };
        for segment in segments {
            let written = match segment {
                OutSegment::Bytes(b) => writer.write_all(&b).await,
                OutSegment::File(range) if writer.is_tls() => copy_file_range(&mut writer, range).await,
                OutSegment::File(range) => send_file_range(socket_fd, range).await,
            };
            if let Err(e) = written {
                // A partly written response cannot be resumed: close.
                tracing::debug!(%peer, error = %e, "write failed; closing");
                return;
            }
        }
        // TLS holds the last records until flushed (a no-op on a plain socket).
        if let Err(e) = writer.flush().await {
            tracing::debug!(%peer, error = %e, "write failed; closing");
            return;
        }
    }
    let _ = writer.close().await;
}

/// A request decoded from one frame, or the immediate answer for one we can only refuse.
#[derive(Debug)]
pub enum Decoded {
    Request {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        header: Box<RequestHeader>,
        request: Box<RequestKind>,
    },
    /// Send these bytes and carry on (KIP-511's ApiVersions fallback).
    Reply(BytesMut),
}

/// Decodes one frame. Pure (no runtime, no state): the fuzz target drives it directly.
/// `Err` means the connection must be closed.
pub fn decode_request(frame: Bytes) -> Result<Decoded, String> {
    if frame.len() < 8 {
        return Err(format!("frame of {} bytes is shorter than a request header", frame.len()));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(api_key_raw).map_err(|_| format!("unknown API key {api_key_raw}"))?;
    let Some((min, max)) = supported_range(api) else {
        return Err(format!("API {api:?} is not supported"));
    };
    if version < min.max(decodable_min(api)) || version > max {
        if api == ApiKey::ApiVersions {
            return Ok(Decoded::Reply(handlers::api_versions::unsupported_version_response(correlation_id)));
        }
        return Err(format!("{api:?} v{version} is not supported (supported {min}..={max})"));
    }
    let mut bytes = frame;
    let header = RequestHeader::decode(&mut bytes, api.request_header_version(version))
        .map_err(|e| format!("bad {api:?} v{version} request header: {e}"))?;
    let request =
        RequestKind::decode(api, &mut bytes, version).map_err(|e| format!("bad {api:?} v{version} body: {e}"))?;
    Ok(Decoded::Request { api, version, correlation_id, header: Box::new(header), request: Box::new(request) })
}

/// Encodes a response with its header and size prefix, as segments to write in order. Fetch
/// record data is referenced, not copied (see [`crate::response_buf`]).
pub fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
    files: Vec<FileRange>,
) -> Result<Vec<OutSegment>, String> {
    let candidates = match response {
        ResponseKind::Fetch(f) => {
            f.responses.iter().flat_map(|t| t.partitions.iter()).filter_map(|p| p.records.clone()).collect()
        }
        _ => Vec::new(),
    };
    // Fetch is a flexible version (compact record bytes) from v12.
    let mut out = SegmentedBuf::with_files(candidates, files, api == ApiKey::Fetch && version >= 12);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api.response_header_version(version))
        .map_err(|e| format!("encoding {api:?} response header: {e}"))?;
    let encoded = match response {
        // The generic encoder, so record bytes go through SegmentedBuf::put_slice.
        ResponseKind::Fetch(f) => Encodable::encode(f, &mut out, version),
        other => {
            let mut body = BytesMut::with_capacity(256);
            other.encode(&mut body, version).map(|()| out.put_slice(&body))
        }
    };
    encoded.map_err(|e| format!("encoding {api:?} v{version} response: {e}"))?;
    let size = i32::try_from(out.len()).map_err(|_| format!("{api:?} response of {} bytes is too large", out.len()))?;
    let mut segments = Vec::with_capacity(4);
    segments.push(OutSegment::Bytes(Bytes::copy_from_slice(&size.to_be_bytes())));
    segments.extend(out.into_segments());
    Ok(segments)
}

/// Decodes and handles one request; the response may still be pending (see
/// [`PendingResponse`]). Also returns how long the connection must stay muted afterwards (a
/// client over its quota, see [`crate::quota`]; 0 otherwise). `Err`: close the connection.
pub async fn process(
    frame: Bytes,
    ctx: &Rc<ShardContext>,
    placement: &mut ProducePlacement,
    security: &ConnectionSecurity,
    identity: &Rc<Identity>,
    quotas: &mut ConnectionQuotas,
) -> Result<(PendingResponse, i64), String> {
    let (api, version, correlation_id, header, request) = match decode_request(frame.clone())? {
        Decoded::Reply(bytes) => {
            let reply = vec![OutSegment::Bytes(bytes.freeze())];
            return Ok((Box::pin(std::future::ready(Ok(Some(reply)))), 0));
        }
        Decoded::Request { api, version, correlation_id, header, request } => {
            (api, version, correlation_id, header, request)
        }
    };
    let mut request = request;
    let denied = match request_authorization::check(ctx, identity, version, &mut request) {
        Verdict::Proceed(denied) => denied,
        Verdict::Answer(kind) => {
            let reply = encode_response(api, version, correlation_id, &kind, Vec::new())?;
            return Ok((Box::pin(std::future::ready(Ok(Some(reply)))), 0));
        }
        Verdict::Close(reason) => return Err(format!("{} not authorized: {reason}", identity.principal)),
    };
    if let RequestKind::Produce(produce) = &*request {
        placement.learn(&frame, produce);
    }
    // Client quotas: a produce's bytes count when it arrives, a fetch's once its response is
    // known. Nothing is looked up or recorded when no quota applies.
    let quota_kind = match &*request {
        RequestKind::Produce(_) => Some(QuotaKind::Produce),
        // A follower's fetch (replication) is not a client's: Kafka's client quotas skip it.
        RequestKind::Fetch(f) if f.replica_id.0 < 0 && f.replica_state.replica_id.0 < 0 => Some(QuotaKind::Fetch),
        _ => None,
    };
    let quota = quota_kind.and_then(|kind| {
        let client_id = header.client_id.as_deref().unwrap_or("");
        quotas.quota_for(&ctx.image.borrow(), &identity.principal, client_id, kind)
    });
    if let (Some(q), RequestKind::Fetch(fetch)) = (quota.as_ref(), &mut *request) {
        // Never more than the quota lets through at once (Kafka's maxValueInQuotaWindow).
        fetch.max_bytes =
            fetch.max_bytes.min(crate::quota::max_fetch_bytes(q.limit_per_second, ctx.config.quota.window));
    }
    let mut throttle_ms = 0;
    if let Some(q) = quota.as_ref().filter(|q| q.sensor.kind == QuotaKind::Produce) {
        throttle_ms = crate::quota::record(ctx, q.clone(), frame.len(), false).await;
    }
    drop(frame); // the request's views keep what they need
                 // Latency from here (the frame is read) to the response encoded (a produce: durable).
    let started = std::time::Instant::now();
    let (ctx_for_denied, identity_for_denied) = (ctx.clone(), identity.clone());
    let encode = move |response: Option<handlers::HandlerResponse>, throttle_ms: i64| match response {
        None => {
            crate::metrics::record_request(api as i16, started.elapsed(), false);
            Ok(None)
        }
        Some(mut r) => {
            denied.apply(&ctx_for_denied, &identity_for_denied, &mut r.kind);
            if throttle_ms > 0 {
                crate::quota::set_throttle_time(&mut r.kind, throttle_ms);
            }
            let error = crate::metrics::response_errors::has_error(&r.kind);
            crate::metrics::record_request(api as i16, started.elapsed(), error);
            encode_response(api, version, correlation_id, &r.kind, r.files).map(Some)
        }
    };
    let reply = handlers::dispatch_pipelined(ctx, &header, *request, version, placement, security, identity).await?;
    let reply = match (reply, quota) {
        (Reply::Now(Some(response)), Some(q)) if q.sensor.kind == QuotaKind::Fetch => {
            let (response, fetch_throttle_ms) = throttle_fetch(ctx, response, q).await;
            throttle_ms = fetch_throttle_ms;
            Reply::Now(Some(response))
        }
        (reply, _) => reply,
    };
    let encode = move |response| encode(response, throttle_ms);
    let pending: PendingResponse = match reply {
        Reply::Now(response) => Box::pin(std::future::ready(encode(response))),
        Reply::Later(later) => Box::pin(async move { encode(later.await) }),
    };
    Ok((pending, throttle_ms))
}

/// Records a Fetch response's bytes against the client's fetch quota; over it, the response is
/// replaced by an empty one with the throttle time (its bytes not counted), as Kafka does.
/// Unlike Kafka, which decides before the fetch session moves on, the handler has already
/// created or advanced the request's session by then: the session is dropped and the empty
/// response carries no session id, so the client starts over with a full fetch instead of
/// believing it was told about partitions it was not.
async fn throttle_fetch(
    ctx: &ShardContext,
    mut response: handlers::HandlerResponse,
    quota: crate::quota::resolve::ResolvedQuota,
) -> (handlers::HandlerResponse, i64) {
    let ResponseKind::Fetch(fetch) = &response.kind else { return (response, 0) };
    let file_bytes: usize = response.files.iter().map(|f| f.len).sum();
    let bytes = crate::quota::fetch_response_bytes(fetch, file_bytes);
    let throttle_ms = crate::quota::record(ctx, quota, bytes, true).await;
    if throttle_ms > 0 {
        if fetch.session_id != 0 {
            ctx.fetch_sessions.borrow_mut().remove(fetch.session_id);
        }
        response.kind = ResponseKind::Fetch(crate::quota::throttled_fetch_response(throttle_ms));
        response.files.clear();
    }
    (response, throttle_ms)
}

/// The client's address without its port (ACLs name hosts).
fn stream_host(peer: &str) -> String {
    // An IPv4 client of an IPv6 listener is `::ffff:a.b.c.d`: ACLs name it a.b.c.d.
    peer.parse::<std::net::SocketAddr>().map(|a| a.ip().to_canonical().to_string()).unwrap_or_else(|_| peer.to_string())
}

/// Bytes of a file range read per step on a TLS connection (they are encrypted, not sent with
/// `sendfile`): bounds the memory one connection's fetch takes at a time.
const TLS_FILE_CHUNK_BYTES: usize = 1024 * 1024;

/// Writes a file range through a TLS connection: read (`pread` on glommio's blocking thread
/// pool, like `sendfile` below) and encrypt, [`TLS_FILE_CHUNK_BYTES`] at a time.
async fn copy_file_range(writer: &mut TransportWriter, range: FileRange) -> std::io::Result<()> {
    let advise = range.clone();
    glommio::executor().spawn_blocking(move || advise_readahead(&advise)).await;
    let mut done = 0usize;
    while done < range.len {
        let (file, position, len) =
            (range.file.clone(), range.position + done as u64, (range.len - done).min(TLS_FILE_CHUNK_BYTES));
        let chunk = glommio::executor()
            .spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                std::os::unix::fs::FileExt::read_exact_at(&*file, &mut buf, position).map(|()| buf)
            })
            .await?;
        writer.write_all(&chunk).await?;
        done += len;
    }
    Ok(())
}

/// Asks the page cache to read `range` and what follows it up to its `readahead_end`
/// (`POSIX_FADV_WILLNEED`: asynchronous reads, submitted all at once) — segments are written
/// with direct I/O, so without it a consumer's every fetch waits on the device, 64 KiB at a
/// time. Blocks while the reads are submitted: call it on the blocking pool only. Best effort.
fn advise_readahead(range: &FileRange) {
    let end = range.position + range.len as u64;
    if range.readahead_end <= end {
        return;
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&*range.file);
    let len = range.readahead_end - range.position;
    // SAFETY: the fd is open for the call (the range holds the file); fadvise reads no memory.
    let rc = unsafe {
        libc::posix_fadvise(fd, range.position as libc::off_t, len as libc::off_t, libc::POSIX_FADV_WILLNEED)
    };
    if rc != 0 {
        tracing::debug!(error = rc, "posix_fadvise(WILLNEED) failed");
    }
}

/// Sends a file range to the socket with `sendfile(2)` on glommio's blocking thread pool: the
/// socket is a blocking fd, and a blocking syscall must never run on the shard thread. The
/// bytes go from the page cache to the socket without a user-space copy.
async fn send_file_range(socket_fd: std::os::fd::RawFd, range: FileRange) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || {
            advise_readahead(&range);
            let file_fd = std::os::fd::AsRawFd::as_raw_fd(&*range.file);
            let mut offset = range.position as libc::off_t;
            let mut left = range.len;
            while left > 0 {
                // SAFETY: both fds are open for the duration (see `serve`); offset is ours.
                let n = unsafe { libc::sendfile(socket_fd, file_fd, &mut offset, left) };
                if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(e);
                }
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "segment file shorter than its range",
                    ));
                }
                left -= n as usize;
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request frame (without its size prefix): header v1/v2 and a body.
    fn frame(api_key: i16, version: i16, flexible: bool, body: &[u8]) -> BytesMut {
        let mut f = BytesMut::new();
        f.extend_from_slice(&api_key.to_be_bytes());
        f.extend_from_slice(&version.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes()); // null client id
        if flexible {
            f.extend_from_slice(&[0]); // no tagged fields
        }
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn decode_request_survives_huge_array_counts() {
        // Found by fuzz/request_decode: array counts from the wire used to size allocations
        // (kafka-protocol 0.18.0), so these tiny frames aborted the broker. With the patched
        // codec they are decode errors.
        let cases = [
            frame(3, 1, false, &i32::MAX.to_be_bytes()),         // Metadata v1 topics
            frame(3, 12, true, &[0xff, 0xff, 0xff, 0xff, 0x0f]), // Metadata v12 compact topics
            frame(0, 3, false, &[0xff, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]), // Produce v3 topic_data
            frame(1, 4, false, &[0; 12].iter().chain(&[0x7f, 0xff, 0xff, 0xff]).copied().collect::<Vec<_>>()),
        ];
        for f in cases {
            let head = f[..4].to_vec();
            assert!(decode_request(f.freeze()).is_err(), "frame starting {head:?} must be refused, not allocated for");
        }
    }
}
