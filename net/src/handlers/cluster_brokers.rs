//! The brokers and the controller id that Metadata and DescribeCluster report: on a single node
//! this node (at its advertised endpoint) and itself as controller; in a cluster every
//! registered, unfenced broker of the image and the active controller as this node last saw it.
//!
//! Each broker is listed at its endpoint on the listener the request came in on (as Kafka: a
//! client on the SSL port is sent SSL endpoints); a broker without that listener is left out.
//!
//! Owns: that choice. Must never: list a fenced broker (clients would send it requests it
//! cannot serve).

use crate::metadata_image::BrokerRegistration;
use crate::shard_context::ShardContext;

pub fn brokers(ctx: &ShardContext, listener: &str) -> Vec<BrokerRegistration> {
    if ctx.config.quorum.is_none() {
        let (host, port) = ctx.config.advertised_endpoint(listener);
        return vec![BrokerRegistration {
            id: ctx.config.node_id,
            host,
            port,
            rack: None,
            fenced: false,
            listeners: Vec::new(),
        }];
    }
    ctx.image
        .borrow()
        .unfenced_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(BrokerRegistration { host: host.to_string(), port, listeners: Vec::new(), ..b.clone() })
        })
        .collect()
}

/// The controller id clients are told (-1 while no active controller is known).
pub fn controller_id(ctx: &ShardContext) -> i32 {
    if ctx.config.quorum.is_none() {
        return ctx.config.node_id;
    }
    crate::controller_quorum::active_controller()
}
