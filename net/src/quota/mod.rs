//! Client quotas (KIP-13, KIP-55, KIP-219, KIP-546): the quota values in the cluster metadata
//! ([`image`]), which one applies to a request ([`resolve`]), the windowed rates
//! ([`rate`]) kept on each sensor's owner shard ([`ledger`]), and the glue a connection uses
//! ([`ConnectionQuotas`], [`record`]).
//!
//! Enforcement, as Kafka's: a Produce request's bytes are recorded against the client's
//! `producer_byte_rate`, a Fetch response's bytes against its `consumer_byte_rate`. A request
//! that takes the rate over the quota is answered at once with `throttle_time_ms` =
//! `(rate − quota) / quota × window` (a throttled Fetch with no data, its bytes not counted),
//! and the connection is then muted — no further request is read from it — for that long
//! (KIP-219: the client is told, and cannot get around it). A quota'd Fetch's `max_bytes` is
//! capped at [`max_fetch_bytes`], so one response alone is never over the quota. Rates add up across shards: each
//! sensor lives on one owner shard (see [`ledger`] for why and what it costs).
//!
//! `connection_creation_rate` (per IP): a new connection over its IP's rate is held for the
//! throttle time and then closed, as Kafka's `ConnectionQuotas` does; it does not count.
//!
//! Not enforced (stored and described only): `request_percentage` (sluice has no request
//! handler pool whose time could be shared out) and `controller_mutation_rate`.
//!
//! Must never: cost a request anything beyond an empty-map check when no quotas are set, or
//! block the shard (muting is a timer on the connection's task).

pub mod image;
pub mod ledger;
pub mod rate;
pub mod resolve;

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

use kafka_protocol::messages::{FetchResponse, ResponseKind};

use crate::metadata_image::MetadataImage;
use crate::shard_context::ShardContext;
use rate::RateWindow;
use resolve::{QuotaKind, ResolvedQuota};

/// The broker's quota settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaConfig {
    /// `quota.window.num` (default 11) samples of `quota.window.size.seconds` (default 1).
    pub window: RateWindow,
}

/// The broker settings [`QuotaConfig::set`] takes (Kafka names).
pub const QUOTA_KEYS: &[&str] = &["quota.window.num", "quota.window.size.seconds"];

impl QuotaConfig {
    /// Sets one of [`QUOTA_KEYS`] (each at least 1, as in Kafka).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let n: i64 = value.trim().parse().map_err(|_| format!("{key}: not a whole number: {value}"))?;
        if !(1..=i32::MAX as i64).contains(&n) {
            return Err(format!("{key}: must be at least 1"));
        }
        match key {
            "quota.window.num" if n <= 1_000 => self.window.samples = n as usize,
            "quota.window.size.seconds" if n <= 86_400 => self.window.window_ms = n * 1_000,
            _ => return Err(format!("{key}: value {value} out of range")),
        }
        Ok(())
    }
}

thread_local! {
    /// This shard's sensors (only those whose keys hash to it).
    static LEDGER: RefCell<ledger::Ledger> = RefCell::new(ledger::Ledger::default());
}

/// Milliseconds on a monotonic clock shared by every shard (rates must not jump with the wall
/// clock).
pub fn monotonic_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

/// Records `bytes` against `quota` on its sensor's owner shard; returns the throttle time.
/// `unrecord_if_throttled`: see [`ledger::Ledger::record`]. A shard that is gone throttles
/// nothing (the broker is shutting down).
pub async fn record(ctx: &ShardContext, quota: ResolvedQuota, bytes: usize, unrecord_if_throttled: bool) -> i64 {
    let owner = ledger::owner_shard(&quota.sensor, ctx.mesh.shard_count());
    let window = ctx.config.quota.window;
    ctx.mesh
        .call(owner, move || async move {
            LEDGER.with(|l| {
                l.borrow_mut()
                    .record(
                        window,
                        &quota.sensor,
                        bytes as f64,
                        quota.limit_per_second,
                        unrecord_if_throttled,
                        monotonic_ms(),
                    )
                    .throttle_ms
            })
        })
        .await
        .unwrap_or(0)
}

/// Whether a new connection from `ip` is within the IP's `connection_creation_rate`: `None`
/// if so (or no quota applies), else how long to hold it before closing it (Kafka accepts an
/// over-rate connection and closes it after the throttle time, slowing reconnect loops; the
/// refused connection does not count towards the rate).
pub async fn connection_throttle_ms(ctx: &ShardContext, ip: std::net::IpAddr) -> Option<i64> {
    let quota = resolve::connection_rate(&ctx.image.borrow().client_quotas, ip)?;
    let throttle_ms = record(ctx, quota, 1, true).await;
    (throttle_ms > 0).then_some(throttle_ms)
}

/// What one connection remembers of its quotas: the last resolution, valid while the image
/// version, principal and client id are the same (a client sends one client id on every
/// request, so this is one lookup per metadata change, not per request).
#[derive(Default)]
pub struct ConnectionQuotas {
    cached: Option<CachedResolution>,
}

struct CachedResolution {
    image_version: u64,
    principal: String,
    client_id: String,
    produce: Option<ResolvedQuota>,
    fetch: Option<ResolvedQuota>,
}

impl ConnectionQuotas {
    /// The quota of `kind` that applies to a request of `principal` with `client_id`, if any.
    pub fn quota_for(
        &mut self,
        image: &MetadataImage,
        principal: &str,
        client_id: &str,
        kind: QuotaKind,
    ) -> Option<ResolvedQuota> {
        if image.client_quotas.is_empty() {
            return None;
        }
        let fresh = self
            .cached
            .as_ref()
            .is_some_and(|c| c.image_version == image.version && c.principal == principal && c.client_id == client_id);
        if !fresh {
            let user = resolve::quota_user(principal);
            self.cached = Some(CachedResolution {
                image_version: image.version,
                principal: principal.to_string(),
                client_id: client_id.to_string(),
                produce: resolve::resolve(&image.client_quotas, QuotaKind::Produce, user, client_id),
                fetch: resolve::resolve(&image.client_quotas, QuotaKind::Fetch, user, client_id),
            });
        }
        let cached = self.cached.as_ref().expect("just filled");
        match kind {
            QuotaKind::Produce => cached.produce.clone(),
            QuotaKind::Fetch => cached.fetch.clone(),
            QuotaKind::Connection => None,
        }
    }
}

/// The most bytes one Fetch may return to a client with a fetch quota of `limit_per_second`
/// (Kafka's `maxValueInQuotaWindow`): what fits the minimum measurement window, so a response
/// alone can never be over the quota — without the cap a client whose every response is larger
/// than that would be throttled, and answered empty, forever.
pub fn max_fetch_bytes(limit_per_second: f64, window: RateWindow) -> i32 {
    let bytes = limit_per_second * (window.samples.saturating_sub(1)) as f64 * window.window_ms as f64 / 1000.0;
    bytes.clamp(1.0, i32::MAX as f64) as i32
}

/// Bytes a Fetch response carries: its records (on disk or in memory), what the fetch quota
/// counts.
pub fn fetch_response_bytes(response: &FetchResponse, file_bytes: usize) -> usize {
    let in_memory: usize = response
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    in_memory + file_bytes
}

/// What a throttled Fetch answers (as Kafka's `getThrottledResponse`): no partitions, the
/// throttle time; no session (the caller drops the fetch's session, see
/// `connection::throttle_fetch`).
pub fn throttled_fetch_response(throttle_ms: i64) -> FetchResponse {
    FetchResponse::default().with_throttle_time_ms(clamp_ms(throttle_ms)).with_error_code(0).with_session_id(0)
}

/// Puts `throttle_ms` into a Produce or Fetch response.
pub fn set_throttle_time(response: &mut ResponseKind, throttle_ms: i64) {
    match response {
        ResponseKind::Produce(r) => r.throttle_time_ms = clamp_ms(throttle_ms),
        ResponseKind::Fetch(r) => r.throttle_time_ms = clamp_ms(throttle_ms),
        _ => {}
    }
}

fn clamp_ms(ms: i64) -> i32 {
    ms.clamp(0, i32::MAX as i64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_is_capped_at_what_fits_the_minimum_window() {
        assert_eq!(max_fetch_bytes(1_000.0, RateWindow::default()), 10_000);
        assert_eq!(max_fetch_bytes(1_000.0, RateWindow { samples: 3, window_ms: 2_000 }), 4_000);
        assert_eq!(max_fetch_bytes(1e12, RateWindow::default()), i32::MAX);
        assert_eq!(max_fetch_bytes(1_000.0, RateWindow { samples: 1, window_ms: 1_000 }), 1);
        // A response of exactly the cap, on a fresh sensor, is within the quota.
        let mut rate = rate::Rate::new(RateWindow::default(), 0);
        assert_eq!(rate.record_and_throttle_ms(max_fetch_bytes(1_000.0, RateWindow::default()) as f64, 1_000.0, 0), 0);
    }

    #[test]
    fn window_settings_are_validated() {
        let mut config = QuotaConfig::default();
        assert_eq!(config.window, RateWindow { samples: 11, window_ms: 1_000 });
        config.set("quota.window.num", "3").unwrap();
        config.set("quota.window.size.seconds", "2").unwrap();
        assert_eq!(config.window, RateWindow { samples: 3, window_ms: 2_000 });
        assert!(config.set("quota.window.num", "0").is_err());
        assert!(config.set("quota.window.size.seconds", "x").is_err());
        assert!(config.set("quota.window.num", "1000000").is_err());
    }

    #[test]
    fn a_connection_resolves_once_per_image_version_and_client_id() {
        use image::{QuotaAlteration, QuotaCommand, QuotaEntity};
        let mut metadata = MetadataImage::new("c".into());
        let mut quotas = ConnectionQuotas::default();
        assert_eq!(quotas.quota_for(&metadata, "User:ANONYMOUS", "app", QuotaKind::Produce), None);
        let entity = QuotaEntity::from_pairs([("client-id", Some("app"))]).unwrap();
        let alteration = QuotaAlteration::new(entity, &[("producer_byte_rate".into(), 500.0, false)]).unwrap();
        metadata.client_quotas.apply(QuotaCommand::Alter { alterations: vec![alteration] });
        metadata.version += 1;
        let q = quotas.quota_for(&metadata, "User:ANONYMOUS", "app", QuotaKind::Produce).unwrap();
        assert_eq!(q.limit_per_second, 500.0);
        assert_eq!(quotas.quota_for(&metadata, "User:ANONYMOUS", "app", QuotaKind::Fetch), None);
        assert_eq!(quotas.quota_for(&metadata, "User:ANONYMOUS", "other", QuotaKind::Produce), None);
    }
}
