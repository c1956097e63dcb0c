//! The Kafka listener of one shard: every shard binds the same address (glommio sets
//! SO_REUSEPORT), so the kernel spreads connections across shards; each connection then lives
//! on the shard that accepted it.
//!
//! Owns: the accept loop and a bound on open connections per shard. Must never: let one bad
//! connection stop the accept loop.

use std::net::SocketAddr;
use std::rc::Rc;

use glommio::net::TcpListener;

use crate::connection;
use crate::shard_context::ShardContext;

/// Most open connections one shard serves (`max.connections`-like limit).
pub const MAX_CONNECTIONS_PER_SHARD: usize = 10_000;

/// Fails if another socket already listens on `addr`. Shards bind with SO_REUSEPORT, which
/// would otherwise let a second broker (or anything else of the same user) silently share the
/// port and get half the connections; Kafka fails with "Address already in use" and so do we.
/// Called once before the shards bind; port 0 (any port) is not checked.
pub fn check_address_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr).map(drop)
}

/// Binds the shard's listener. Separate from [`serve`] so start-up can fail fast.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).map_err(std::io::Error::from)
}

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
        if open.get() >= MAX_CONNECTIONS_PER_SHARD {
            sluice_engine::warn_limited!(shard = ctx.shard, "too many connections; refusing one");
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let ctx = ctx.clone();
        let open = open.clone();
        glommio::spawn_local(async move {
            connection::serve(stream, ctx).await;
            open.set(open.get() - 1);
        })
        .detach();
    }
}
