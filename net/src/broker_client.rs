//! Requests from this broker to another one of the cluster (inter-broker): transaction markers
//! for partitions another node leads, KIP-890 verification with a transaction coordinator on
//! another node. One connection per shard per remote node, opened on first use to the node's
//! registered endpoint (the metadata image) and dropped when a request on it fails, so the next
//! call reconnects — to a new endpoint too, if the node registered one.
//!
//! Owns: this shard's connection cache. Must never: block the shard, wait longer than
//! [`BROKER_REQUEST_TIMEOUT_MS`] for an answer, hold a `RefCell` borrow across an `.await`, or
//! retry by itself (callers retry with their own backoff).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::{select, Either};
use kafka_protocol::protocol::Request;

use crate::kafka_client::KafkaConnection;
use crate::shard_context::ShardContext;

/// Longest one inter-broker request (connecting included) may take.
pub const BROKER_REQUEST_TIMEOUT_MS: u64 = 10_000;

thread_local! {
    /// Open connections by (node id, address).
    static CONNECTIONS: RefCell<HashMap<(i32, String), Rc<KafkaConnection>>> = RefCell::new(HashMap::new());
}

/// The registered address of `node`, if it is a known, unfenced broker.
pub fn endpoint(ctx: &ShardContext, node: i32) -> Option<String> {
    let image = ctx.image.borrow();
    image.brokers.get(&node).filter(|b| !b.fenced).map(|b| format!("{}:{}", b.host, b.port))
}

/// Sends `request` to `node` at `version` and returns its response, or why there is none.
pub async fn call<R: Request>(ctx: &ShardContext, node: i32, request: &R, version: i16) -> Result<R::Response, String> {
    let addr = endpoint(ctx, node).ok_or_else(|| format!("broker {node} is not available"))?;
    let key = (node, addr.clone());
    let attempt = async {
        let cached = CONNECTIONS.with(|c| c.borrow().get(&key).cloned());
        let connection = match cached {
            Some(c) => c,
            None => {
                let client_id = format!("sluice-broker-{}", ctx.config.node_id);
                let c = Rc::new(KafkaConnection::connect(&addr, &client_id).await?);
                CONNECTIONS.with(|m| m.borrow_mut().insert(key.clone(), c.clone()));
                c
            }
        };
        connection.call_at(request, version).await
    };
    let timeout = glommio::timer::sleep(Duration::from_millis(BROKER_REQUEST_TIMEOUT_MS));
    futures::pin_mut!(attempt, timeout);
    let result = match select(attempt, timeout).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(format!("broker {node} at {addr}: no answer in {BROKER_REQUEST_TIMEOUT_MS} ms")),
    };
    if result.is_err() {
        CONNECTIONS.with(|c| c.borrow_mut().remove(&key));
    }
    result
}
