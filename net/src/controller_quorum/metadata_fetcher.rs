//! Broker-only nodes (`process.roles=broker`) follow the metadata log by fetching: a loop on
//! the controller thread asks a voter for the commands after its last applied index (the whole
//! image when it is too far behind), applies them to its state machine and hands them to the
//! shards — Kafka's brokers fetch `__cluster_metadata` the same way (see the module doc of
//! [`super`] for why not openraft learners).
//!
//! Owns: that loop. Must never: apply a command out of order or twice (the state machine skips
//! what it applied), or hammer a voter that does not answer (it moves to the next one and
//! waits a tick).

use std::sync::Arc;
use std::time::Duration;

use super::node::{lock, Node, TICK};
use super::rpc::{Request, Response};
use super::set_active_controller;
use super::state_machine::{Durable, FetchReply};

impl Node {
    /// Broker-only nodes: fetch committed commands from the voters.
    pub(super) async fn fetch_loop(self: Arc<Self>) {
        let timeout = Duration::from_millis(self.config.fetch_timeout_ms.max(100));
        let mut target = self.next_voter_address();
        loop {
            let after_index = lock(&self.state).last_applied_index();
            let response = self.pool.call(&target, &Request::FetchMetadata { after_index }, timeout).await;
            let progressed = match response {
                Ok(Response::Metadata { reply, active_controller }) => {
                    set_active_controller(active_controller);
                    self.apply_fetched(reply).await
                }
                Ok(other) => {
                    sluice_engine::warn_limited!(%target, response = ?other, "metadata fetch refused");
                    target = self.next_voter_address();
                    false
                }
                Err(e) => {
                    sluice_engine::warn_limited!(%target, error = %e, "metadata fetch failed");
                    target = self.next_voter_address();
                    false
                }
            };
            if !progressed {
                tokio::time::sleep(TICK).await;
            }
        }
    }

    async fn apply_fetched(&self, reply: FetchReply) -> bool {
        let mut for_shards = Vec::new();
        {
            let mut state = lock(&self.state);
            let before = state.last_applied_index();
            if let Some((image, last_applied)) = reply.image {
                for_shards.extend(state.install(Durable { image, last_applied, membership: Default::default() }));
            }
            for (log_id, command) in reply.entries {
                for_shards.extend(state.apply_fetched(log_id, command));
            }
            if state.last_applied_index() == before {
                return false;
            }
            if let Err(e) = state.persist() {
                tracing::error!(error = %e, "cannot persist the fetched metadata image");
            }
        }
        for applied in for_shards {
            let _ = self.applied.send(applied).await;
        }
        true
    }
}
