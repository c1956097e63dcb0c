//! The Kafka listener of one shard: every shard binds the same address (glommio sets
//! SO_REUSEPORT), so the kernel spreads connections across shards; each connection then lives
//! on the shard that accepted it.
//!
//! Owns: the accept loop and a bound on open connections per shard. Must never: let one bad
//! connection stop the accept loop.

use std::net::SocketAddr;
use std::rc::Rc;

use std::os::fd::{FromRawFd, IntoRawFd};

use glommio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

use crate::connection;
use crate::shard_context::ShardContext;

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

/// Accepts connections until `stop` resolves.
pub async fn serve(listener: TcpListener, ctx: Rc<ShardContext>) {
    let open = Rc::new(std::cell::Cell::new(0usize));
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
        glommio::spawn_local(async move {
            connection::serve(stream, ctx).await;
            open.set(open.get() - 1);
            crate::metrics::connection_closed();
        })
        .detach();
    }
}
