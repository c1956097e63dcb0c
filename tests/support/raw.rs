//! A blocking raw Kafka-protocol client for tests: send exactly the request (or exactly the
//! bytes) a test wants and read the response frame. Uses the `kafka-protocol` codecs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

pub struct RawClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawClient {
    pub fn connect(bootstrap: &str) -> RawClient {
        let stream = TcpStream::connect(bootstrap).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient { stream, next_correlation_id: 1 }
    }

    /// Encodes `request` at `version` with a correct header and size prefix.
    pub fn encode<R: Request>(&mut self, request: &R, version: i16) -> (i32, BytesMut) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let api = ApiKey::try_from(R::KEY).expect("known key");
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-raw-test")));
        let mut body = BytesMut::new();
        header.encode(&mut body, api.request_header_version(version)).expect("header");
        request.encode(&mut body, version).expect("body");
        let mut framed = BytesMut::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        (correlation_id, framed)
    }

    /// Sends `request` and decodes its response (checking the correlation id).
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let (correlation_id, framed) = self.encode(request, version);
        self.write_bytes(&framed);
        let mut frame = self.read_frame().expect("response frame");
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).expect("response header");
        assert_eq!(header.correlation_id, correlation_id, "responses come in request order");
        R::Response::decode(&mut frame, version).expect("response body")
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes `bytes`, ignoring a connection the broker already closed.
    pub fn write_bytes_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let size = i32::from_be_bytes(size);
        assert!((0..=256 << 20).contains(&size), "response size {size}");
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    /// True if the broker closed this connection (reads EOF or reset within the timeout).
    pub fn is_closed_by_peer(&mut self) -> bool {
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }

    /// Reads the correlation id at the front of a response frame.
    pub fn correlation_id_of(frame: &Bytes) -> i32 {
        let mut f = frame.clone();
        f.get_i32()
    }
}
