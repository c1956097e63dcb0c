//! The Kafka listeners of one shard: every shard binds each client listener's address (glommio
//! sets SO_REUSEPORT), so the kernel spreads connections across shards; each connection then
//! lives on the shard that accepted it.
//!
//! Owns: the accept loop of each listener, the TLS handshake of SSL and SASL_SSL listeners
//! (bounded by [`TLS_HANDSHAKE_TIMEOUT_MS`]) and the mTLS principal, and a bound on open
//! connections per shard (all listeners together). SASL_PLAINTEXT and SASL_SSL listeners are
//! served like PLAINTEXT and SSL until SASL authentication lands (it goes in the connection,
//! next to [`ConnectionSecurity`]). Must never: let one bad connection (a failed or stalled
//! handshake included) stop the accept loop or affect another connection.

use std::net::SocketAddr;
use std::rc::Rc;

use std::os::fd::{FromRawFd, IntoRawFd};

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::connection;
use crate::security::protocol::{ConnectionSecurity, SecurityProtocol};
use crate::security::tls_config::TlsAcceptor;
use crate::security::tls_stream::TlsStream;
use crate::security::transport::Transport;
use crate::shard_context::ShardContext;

/// One client listener, as every shard serves it.
#[derive(Clone, Debug)]
pub struct ClientListener {
    /// Its name in `listeners` (`PLAINTEXT`, `SSL`, or a named one).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub addr: SocketAddr,
    /// Set exactly when `protocol` uses TLS.
    pub tls: Option<TlsAcceptor>,
}

/// Longest a TLS handshake may take from accept (a client that stalls it is closed).
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Most open connections one shard serves unless `max.connections` says otherwise (the broker
/// lowers it to fit the open-files limit).
pub const MAX_CONNECTIONS_PER_SHARD: usize = 10_000;

/// Fails if a live socket listens on `addr`. Shards bind with SO_REUSEPORT, which would
/// otherwise let a second broker (or anything else of the same user) silently share the port and
/// get half the connections; Kafka fails with "Address already in use" and so do we. The probe
/// sets SO_REUSEADDR and not SO_REUSEPORT: it then conflicts with any listener on the address
/// but not with the TIME_WAIT sockets a stopped or crashed broker leaves behind — a supervisor
/// restarts a broker at once, as Kafka's does. Called once before the shards bind; port 0 (any
/// port) is not checked.
pub fn check_address_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Binds the shard's listener (SO_REUSEADDR and SO_REUSEPORT, backlog [`LISTEN_BACKLOG`]).
/// Separate from [`serve`] so start-up can fail fast.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: the descriptor is a listening TCP socket we own; the listener takes it over.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Pending connections the kernel queues per shard listener.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Accepts connections on `listener` forever. `open` counts this shard's open connections
/// over all its listeners.
pub async fn serve(
    listener: TcpListener,
    spec: std::sync::Arc<ClientListener>,
    open: Rc<std::cell::Cell<usize>>,
    ctx: Rc<ShardContext>,
) {
    assert_eq!(spec.tls.is_some(), spec.protocol.uses_tls(), "listener {} has TLS iff its protocol does", spec.name);
    let name: Rc<str> = Rc::from(spec.name.as_str());
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                sluice_engine::warn_limited!(shard = ctx.shard, error = %e, "accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if open.get() >= ctx.config.max_connections_per_shard {
            sluice_engine::warn_limited!(shard = ctx.shard, "too many connections; refusing one");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        crate::metrics::connection_opened();
        let ctx = ctx.clone();
        let open = open.clone();
        let spec = spec.clone();
        let name = name.clone();
        glommio::spawn_local(async move {
            if let Ok(peer) = stream.peer_addr() {
                if let Some(throttle_ms) = crate::quota::connection_throttle_ms(&ctx, peer.ip()).await {
                    sluice_engine::warn_limited!(%peer, throttle_ms, "closing connection: over its IP's connection_creation_rate");
                    crate::metrics::record_quota_throttle(crate::quota::resolve::QuotaKind::Connection, throttle_ms);
                    glommio::timer::sleep(std::time::Duration::from_millis(throttle_ms as u64)).await;
                    drop(stream);
                    open.set(open.get() - 1);
                    crate::metrics::connection_closed();
                    return;
                }
            }
            let security = ConnectionSecurity { listener: name, protocol: spec.protocol, tls_principal: None };
            if let Some((transport, security)) = secure(stream, &spec, security).await {
                connection::serve(transport, security, ctx).await;
            }
            open.set(open.get() - 1);
            crate::metrics::connection_closed();
        })
        .detach();
    }
}

/// The connection's transport: on a TLS listener after a handshake that finished within
/// [`TLS_HANDSHAKE_TIMEOUT_MS`] and, for a client that sent a certificate, its principal.
/// `None`: the connection is closed (logged, rate-limited).
async fn secure(
    stream: glommio::net::TcpStream,
    spec: &ClientListener,
    mut security: ConnectionSecurity,
) -> Option<(Transport, ConnectionSecurity)> {
    let Some(tls) = &spec.tls else {
        return Some((Transport::Plain(stream), security));
    };
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let handshake = Box::pin(TlsStream::accept(stream, tls.config.clone()));
    let deadline = Box::pin(glommio::timer::sleep(std::time::Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS)));
    let stream = match futures::future::select(handshake, deadline).await {
        futures::future::Either::Left((Ok(stream), _)) => stream,
        futures::future::Either::Left((Err(e), _)) => {
            sluice_engine::warn_limited!(%peer, listener = %spec.name, error = %e, "closing connection: TLS handshake failed");
            return None;
        }
        futures::future::Either::Right(_) => {
            sluice_engine::warn_limited!(%peer, listener = %spec.name, timeout_ms = TLS_HANDSHAKE_TIMEOUT_MS, "closing connection: TLS handshake timed out");
            return None;
        }
    };
    if let Some(der) = stream.peer_certificate() {
        match tls.principal_mapper.principal_for(&der) {
            Ok(principal) => security.tls_principal = Some(principal),
            Err(e) => {
                sluice_engine::warn_limited!(%peer, listener = %spec.name, error = %e, "closing connection: no principal for the client certificate");
                return None;
            }
        }
    }
    Some((Transport::Tls(stream), security))
}
