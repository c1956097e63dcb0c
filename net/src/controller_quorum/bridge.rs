//! The bridge from the controller thread to the shards: a task on shard 0 takes committed
//! commands in log order from the bounded channel the state machine fills, and runs each on
//! every shard through [`crate::controller::apply_on_shard`] (a whole image, after a snapshot
//! or a far-behind fetch, through [`crate::controller::install_image_on_shard`]); then it
//! raises the "applied on every shard" watermark that submitters wait on.
//!
//! Owns: that task and the watermark (shard 0 only). Must never: apply out of log order, or
//! run on the controller thread (shards are `!Send`; only shard 0 reaches them, by the mesh).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use sluice_engine::watermark::Watermark;

use super::state_machine::Applied;
use crate::metadata_image::{codes, MetadataError};
use crate::shard_context::ShardContext;

thread_local! {
    /// The last log index every shard applied (shard 0 only).
    static APPLIED_ON_SHARDS: RefCell<Option<Rc<Watermark>>> = const { RefCell::new(None) };
}

/// Starts the bridge on this shard (shard 0, once its context is installed). False if there
/// is no quorum (single node) or it runs already.
pub fn start(ctx: Rc<ShardContext>) -> bool {
    let Some((mut receiver, start_index)) = super::node::take_applied_receiver() else { return false };
    let watermark = Watermark::new(start_index);
    APPLIED_ON_SHARDS.with(|w| *w.borrow_mut() = Some(watermark.clone()));
    glommio::spawn_local(async move {
        while let Some(applied) = receiver.recv().await {
            let index = match &applied {
                Applied::Command { index, .. } | Applied::Image { index, .. } => *index,
            };
            if index <= start_index {
                continue; // in the image the shards started from
            }
            for shard in 0..ctx.mesh.shard_count() {
                let applied = applied.clone();
                let result = ctx
                    .mesh
                    .call(shard, move || async move {
                        match applied {
                            Applied::Command { command, .. } => crate::controller::apply_on_shard(command).await,
                            Applied::Image { image, .. } => crate::controller::install_image_on_shard(image).await,
                        }
                    })
                    .await;
                if let Err(e) = result {
                    sluice_engine::error_limited!(shard, error = %e, "a shard could not apply a metadata command");
                }
            }
            watermark.advance(index);
        }
    })
    .detach();
    true
}

/// Waits (on shard 0) until every shard applied the log up to `index`, at most `timeout`.
pub async fn wait_applied(index: u64, timeout: Duration) -> Result<(), MetadataError> {
    let watermark = APPLIED_ON_SHARDS.with(|w| w.borrow().clone());
    let Some(watermark) = watermark else {
        return Err(MetadataError::new(codes::NOT_CONTROLLER, "the metadata bridge is not running"));
    };
    let wait = async {
        watermark.wait_for(index).await.map_err(|_| MetadataError::new(codes::NOT_CONTROLLER, "shutting down"))
    };
    let timer = async {
        glommio::timer::sleep(timeout).await;
        Err(MetadataError::new(
            codes::REQUEST_TIMED_OUT,
            format!("the command was committed but not applied on this node within {} ms", timeout.as_millis()),
        ))
    };
    futures_lite::future::or(wait, timer).await
}
