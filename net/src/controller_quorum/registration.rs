//! A broker's registration at start-up: the main thread asks the quorum to register this
//! broker (`RegisterBroker`) and waits until this node applied the log that far, before any
//! shard starts; the shards then start from the image as of that moment.
//!
//! Owns: that wait (main thread only: it blocks) and the switch that makes the state machine
//! hand later commands to the shards (`StateMachine::start_forwarding`). Must never: let
//! the shards start from an image older than this broker's registration, or ignore a
//! shutdown signal while the quorum is unreachable.

use std::time::Duration;

use tokio::sync::oneshot;

use super::node::{handle, lock, Call, APPLIED, STATE};
use crate::metadata_image::MetadataCommand;

/// How long one registration attempt may look for an active controller.
const REGISTRATION_ATTEMPT: Duration = Duration::from_secs(1);

/// Main thread, before the shards start: registers this broker (endpoint, rack, unfenced) and
/// waits until this node applied the log that far; returns the image and index the shards
/// start from (the bridge skips what they already hold). Retried until it succeeds — a broker
/// serves nobody before the quorum knows it, as in Kafka — or `stop_requested()`.
pub fn register_blocking(
    registration: crate::metadata_image::BrokerRegistration,
    stop_requested: impl Fn() -> bool,
) -> Result<(crate::metadata_image::MetadataImage, u64), String> {
    let (handle, state) = handle().zip(STATE.get()).ok_or("the controller thread is not running")?;
    tracing::info!(node_id = registration.id, "registering with the metadata quorum");
    let mut attempt = 0u32;
    let mut waited = 0u64;
    let stopped = || Err("stopped before this broker could register with the metadata quorum".to_string());
    loop {
        if stop_requested() {
            return stopped();
        }
        let (reply, answer) = oneshot::channel();
        let command = MetadataCommand::RegisterBroker(registration.clone());
        handle
            .calls
            .try_send(Call::Submit { command, timeout: REGISTRATION_ATTEMPT, reply })
            .map_err(|e| format!("the controller thread does not take calls: {e}"))?;
        match answer.blocking_recv() {
            Ok(Ok(submitted)) => loop {
                waited += 1;
                if waited.is_multiple_of(500) {
                    let applied = lock(state).last_applied_index();
                    tracing::warn!(
                        registered_at = submitted.index,
                        applied,
                        "still applying the log up to this broker's registration"
                    );
                }
                {
                    let mut state = lock(state);
                    if state.last_applied_index() >= submitted.index {
                        let (image, index) = state.start_forwarding();
                        if let Some((_, start)) = APPLIED.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                            *start = index;
                        }
                        tracing::info!(node_id = registration.id, index, "registered with the metadata quorum");
                        return Ok((image, index));
                    }
                }
                if stop_requested() {
                    return stopped();
                }
                std::thread::sleep(Duration::from_millis(10));
            },
            Ok(Err(e)) => {
                attempt += 1;
                tracing::warn!(attempt, code = e.code, error = %e.message, "broker registration failed; retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(_) => return Err("the controller thread stopped".into()),
        }
    }
}
