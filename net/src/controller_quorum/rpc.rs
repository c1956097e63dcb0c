//! The controllers' internal RPC (not Kafka's KRaft wire format): on a TCP connection to a
//! CONTROLLER listener, the client sends one request frame and reads one response frame, in
//! turn. A frame is a 4-byte big-endian body length and a JSON body, at most
//! [`MAX_FRAME_BYTES`].
//!
//! Owns: the message types, the frame codec and a small client connection pool. Must never:
//! read a length it has not checked against the limit, or wait on a peer without a timeout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::state_machine::FetchReply;
use super::{MetadataRaft, Submitted};
use crate::metadata_image::{MetadataCommand, MetadataError};

/// Largest frame (a whole image, when a broker-only node is far behind, is the biggest).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Idle connections kept per peer.
const POOLED_PER_PEER: usize = 4;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<u64>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    /// A command for the active controller; `hops` counts forwards (at most one more).
    Submit {
        command: MetadataCommand,
        hops: u8,
    },
    /// A broker's heartbeat for the active controller (`shutting_down`: do not unfence it).
    Heartbeat {
        broker_id: i32,
        shutting_down: bool,
        hops: u8,
    },
    /// A broker-only node's fetch of the commands after `after_index`.
    FetchMetadata {
        after_index: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    Submitted(Result<Submitted, MetadataError>),
    Heartbeat(Result<(), MetadataError>),
    Metadata {
        reply: FetchReply,
        active_controller: i32,
    },
    /// This node cannot serve the request (e.g. a raft RPC to a broker-only node).
    Refused(String),
}

/// Writes one frame.
pub async fn write_frame<T: Serialize>(stream: &mut TcpStream, message: &T) -> std::io::Result<()> {
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("frame of {} bytes is over the limit", body.len())));
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await
}

/// Most bytes set aside for a frame before its body arrives.
const INITIAL_FRAME_BUFFER_BYTES: usize = 64 * 1024;

/// Reads one frame: `Ok(None)` at a clean end of stream, an error for an oversized length or
/// a body that does not decode.
pub async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> std::io::Result<Option<T>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    check_frame_len(len)?;
    // The buffer grows with the bytes that arrive, not with the length a peer claims.
    let mut body = Vec::with_capacity(len.min(INITIAL_FRAME_BUFFER_BYTES));
    let read = (&mut *stream).take(len as u64).read_to_end(&mut body).await?;
    if read < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "frame cut short"));
    }
    serde_json::from_slice(&body).map(Some).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A frame length is refused before anything is allocated for it.
pub fn check_frame_len(len: usize) -> std::io::Result<()> {
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame length {len} is over the limit of {MAX_FRAME_BYTES}"),
        ));
    }
    Ok(())
}

/// Connections to peers, reused between calls.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl Pool {
    /// Sends `request` to `address` and reads the response, all within `timeout`.
    pub async fn call(&self, address: &str, request: &Request, timeout: Duration) -> std::io::Result<Response> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).get_mut(address).and_then(Vec::pop);
        let attempt = async {
            let mut stream = match pooled {
                Some(s) => s,
                None => {
                    let s = TcpStream::connect(address).await?;
                    s.set_nodelay(true)?;
                    s
                }
            };
            write_frame(&mut stream, request).await?;
            let response: Response = read_frame(&mut stream)
                .await?
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed"))?;
            Ok::<_, std::io::Error>((stream, response))
        };
        let (stream, response) = tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{address}: timed out")))??;
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let streams = idle.entry(address.to_string()).or_default();
        if streams.len() < POOLED_PER_PEER {
            streams.push(stream);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        assert!(check_frame_len(MAX_FRAME_BYTES).is_ok());
        assert!(check_frame_len(MAX_FRAME_BYTES + 1).is_err());
        assert!(check_frame_len(u32::MAX as usize).is_err());
    }

    #[test]
    fn messages_round_trip_as_json() {
        let r = Request::Submit { command: MetadataCommand::AllocateProducerIds { count: 3 }, hops: 1 };
        let back: Request = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert!(matches!(back, Request::Submit { hops: 1, .. }));
        assert!(serde_json::from_slice::<Request>(b"{\"Nope\":1}").is_err());
    }
}
