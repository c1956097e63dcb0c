//! The brokers and the controller id that Metadata and DescribeCluster report: on a single node
//! this node (at its advertised endpoint) and itself as controller; in a cluster every
//! registered, unfenced broker of the image and the active controller as this node last saw it.
//!
//! Owns: that choice. Must never: list a fenced broker (clients would send it requests it
//! cannot serve).

use crate::metadata_image::BrokerRegistration;
use crate::shard_context::ShardContext;

pub fn brokers(ctx: &ShardContext) -> Vec<BrokerRegistration> {
    if ctx.config.quorum.is_none() {
        return vec![BrokerRegistration {
            id: ctx.config.node_id,
            host: ctx.config.advertised_host.clone(),
            port: ctx.config.advertised_port,
            rack: None,
            fenced: false,
        }];
    }
    ctx.image.borrow().unfenced_brokers().cloned().collect()
}

/// The controller id clients are told (-1 while no active controller is known).
pub fn controller_id(ctx: &ShardContext) -> i32 {
    if ctx.config.quorum.is_none() {
        return ctx.config.node_id;
    }
    crate::controller_quorum::active_controller()
}
