//! The CONTROLLER listener: accepts connections from the other nodes and answers their
//! internal RPCs ([`super::rpc`]) through the [`super::node::Node`].
//!
//! Owns: accepting (at most [`MAX_CONNECTIONS`] at once) and the per-connection loop. Must
//! never: panic or hang on garbage — a frame over the limit or one that does not decode closes
//! the connection with one log line; an idle connection is closed after [`IDLE_TIMEOUT`].

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::node::Node;
use super::rpc::{read_frame, write_frame, Request};

pub const MAX_CONNECTIONS: usize = 256;
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                sluice_engine::warn_limited!(error = %e, "controller listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            sluice_engine::warn_limited!(%peer, "controller listener: too many connections; closing one");
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, &node).await {
                sluice_engine::warn_limited!(%peer, error = %e, "controller connection closed");
            }
            drop(permit);
        });
    }
}

async fn connection(mut stream: TcpStream, node: &Arc<Node>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        let request: Request = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Err(_) => return Ok(()),
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(request))) => request,
            Ok(Err(e)) => return Err(e),
        };
        let response = node.handle_rpc(request).await;
        write_frame(&mut stream, &response).await?;
    }
}
