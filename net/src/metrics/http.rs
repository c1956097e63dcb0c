//! The metrics endpoint: a minimal HTTP/1.1 server on one shard (glommio's `TcpListener`):
//! `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz` (200 while the process
//! serves), `GET /readyz` (200 once every shard finished start-up and, in a cluster, this
//! broker is registered and unfenced; 503 before). Anything else is 404 (405 for a method other
//! than GET/HEAD); one request per connection, then close. A hand-written handler instead of a
//! crate: the HTTP crates that fit (hyper) want a tokio-style runtime and bring a server far
//! larger than three GET routes need.
//!
//! Owns: the listener, request parsing (bounded: [`MAX_REQUEST_BYTES`] and a read timeout; a
//! malformed request gets 400 and the connection closes) and the scrape: every shard's
//! snapshot through the shard mesh, merged by [`super::exposition`]. Must never: block the
//! shard (reads and writes are glommio's, the scrape's calls are async), or let a slow or
//! hostile client hold more than [`MAX_CONNECTIONS`] connections.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::io::{AsyncReadExt as _, AsyncWriteExt as _};
use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};

use crate::broker_config::BrokerConfig;
use crate::shard_context::ShardContext;

/// Longest request (line and headers) read; longer ones get 431 and are closed.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 16;
/// A client that sends nothing for this long is closed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Called on the serving shard once every shard finished start-up.
pub fn set_started() {
    STARTED.with(|s| s.set(true));
}

/// Binds the metrics listener (SO_REUSEADDR, not SO_REUSEPORT: one shard serves it, and a
/// second broker on the same address must fail).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(64)?;
    // SAFETY: the descriptor is a listening TCP socket we own; the listener takes it over.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// The previous scrape's busy time per shard, for [`super::exposition::NodeInputs::busy_ratio`].
struct ScrapeState {
    previous: RefCell<Option<(Instant, Vec<f64>)>>,
}

/// Serves the endpoint forever (spawned on one shard).
pub async fn serve(listener: TcpListener, config: Arc<BrokerConfig>) {
    let open = Rc::new(Cell::new(0usize));
    let state = Rc::new(ScrapeState { previous: RefCell::new(None) });
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                sluice_engine::warn_limited!(error = %e, "metrics: accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= MAX_CONNECTIONS {
            continue; // dropped: closed
        }
        open.set(open.get() + 1);
        let (open, state, config) = (open.clone(), state.clone(), config.clone());
        glommio::spawn_local(async move {
            let _ = serve_one(stream, &state, &config).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}

/// A parsed request line.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Get { path: String, head: bool },
    OtherMethod,
}

/// Parses the request head (line and headers, up to the blank line). `None`: malformed.
pub fn parse_request(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let line = text.split("\r\n").next()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target).to_string();
    match method {
        "GET" => Some(Request::Get { path, head: false }),
        "HEAD" => Some(Request::Get { path, head: true }),
        _ => Some(Request::OtherMethod),
    }
}

async fn serve_one(mut stream: TcpStream, state: &ScrapeState, config: &BrokerConfig) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let head_end = loop {
        if let Some(end) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(end);
        }
        if len == buf.len() {
            break None;
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(()); // closed before a whole request
        }
        len += n;
    };
    let (status, content_type, body, head_only) = match head_end {
        None => (431, "text/plain", "request header too large\n".to_string(), false),
        Some(end) => match parse_request(&buf[..end]) {
            None => (400, "text/plain", "bad request\n".to_string(), false),
            Some(Request::OtherMethod) => (405, "text/plain", "only GET\n".to_string(), false),
            Some(Request::Get { path, head }) => {
                let (status, content_type, body) = route(&path, state, config).await;
                (status, content_type, body, head)
            }
        },
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.close().await
}

/// Whether this broker is ready: start-up is over and, in a cluster, its registration is in
/// the image and not fenced.
fn ready(config: &BrokerConfig) -> Result<(), &'static str> {
    if !STARTED.with(Cell::get) {
        return Err("starting\n");
    }
    let Some(ctx) = ShardContext::try_current() else { return Err("starting\n") };
    if config.quorum.is_some() {
        let image = ctx.image.borrow();
        match image.brokers.get(&config.node_id) {
            None => return Err("not registered\n"),
            Some(b) if b.fenced => return Err("fenced\n"),
            Some(_) => {}
        }
    }
    Ok(())
}

async fn route(path: &str, state: &ScrapeState, config: &BrokerConfig) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/healthz" => (200, TEXT, "ok\n".into()),
        "/readyz" => match ready(config) {
            Ok(()) => (200, TEXT, "ready\n".into()),
            Err(why) => (503, TEXT, why.into()),
        },
        "/metrics" => {
            if !STARTED.with(Cell::get) {
                return (503, TEXT, "starting\n".into());
            }
            (200, "text/plain; version=0.0.4; charset=utf-8", scrape(state, config).await)
        }
        _ => (404, TEXT, "not found: try /metrics, /healthz or /readyz\n".into()),
    }
}

async fn scrape(state: &ScrapeState, config: &BrokerConfig) -> String {
    let ctx = ShardContext::current();
    let shards: Vec<super::ShardSnapshot> =
        ctx.mesh.call_all(|| async { super::snapshot() }).await.into_iter().filter_map(Result::ok).collect();
    let now = Instant::now();
    let busy: Vec<f64> = shards.iter().map(|s| s.busy_seconds).collect();
    let busy_ratio = match state.previous.replace(Some((now, busy.clone()))) {
        Some((then, before)) if before.len() == busy.len() && now > then => {
            let wall = (now - then).as_secs_f64();
            busy.iter().zip(&before).map(|(b, a)| ((b - a) / wall).clamp(0.0, 1.0)).collect()
        }
        // First scrape: since the process started.
        _ => {
            let wall = (super::monotonic_ms() as f64 / 1000.0).max(1.0);
            busy.iter().map(|b| (b / wall).clamp(0.0, 1.0)).collect()
        }
    };
    let node = super::exposition::NodeInputs {
        data_dir: config.data_dir.display().to_string(),
        replication: crate::replication::counters::snapshot(),
        busy_ratio,
    };
    super::exposition::render(&shards, &node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_parse_or_are_refused() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x"),
            Some(Request::Get { path: "/metrics".into(), head: false })
        );
        assert_eq!(
            parse_request(b"HEAD /readyz?x=1 HTTP/1.0"),
            Some(Request::Get { path: "/readyz".into(), head: true })
        );
        assert_eq!(parse_request(b"POST /metrics HTTP/1.1"), Some(Request::OtherMethod));
        for garbage in [&b"\x16\x03\x01\x02\x00"[..], b"GET /metrics", b"GET metrics HTTP/1.1", b"get / HTTP/1.1", b""]
        {
            assert_eq!(parse_request(garbage), None, "{garbage:?}");
        }
    }
}
