//! Which quota applies to a request: Kafka's precedence of entity matches
//! (`ClientQuotaManager`'s default callback), per quota key, and the sensor the request's bytes
//! count against.
//!
//! The first entity in this order that has a value for the key wins:
//! 1. `user=U, client-id=C`  2. `user=U, client-id=<default>`  3. `user=U`
//! 4. `user=<default>, client-id=C`  5. `user=<default>, client-id=<default>`
//! 6. `user=<default>`  7. `client-id=C`  8. `client-id=<default>`.
//!
//! The sensor — whose rate is measured and throttled — is named by (user, client id) tags as in
//! Kafka: a quota on a user alone (3, 6) is shared by all that user's client ids (tags
//! `(U, "")`); a client-id quota alone (7, 8) by all users of that client id (`("", C)`);
//! otherwise `(U, C)`. A default entity's quota is per matching entity, not shared: every
//! client id under `client-id=<default>` has its own sensor with the default limit.
//!
//! Owns: the precedence. Pure. Must never: allocate when there are no quotas at all.

use super::image::{ClientQuotaImage, EntityName, QuotaEntity};

/// A throttled quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaKind {
    /// `producer_byte_rate`: bytes of Produce requests.
    Produce,
    /// `consumer_byte_rate`: bytes of Fetch responses.
    Fetch,
    /// `connection_creation_rate`: new connections from one IP.
    Connection,
}

impl QuotaKind {
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => super::image::PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => super::image::CONSUMER_BYTE_RATE,
            QuotaKind::Connection => super::image::CONNECTION_CREATION_RATE,
        }
    }
}

/// The sensor a request's bytes are recorded on: one per (kind, user tag, client-id tag);
/// connection rates: one per (kind, IP).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SensorKey {
    pub kind: QuotaKind,
    pub user: String,
    pub client_id: String,
    /// The client's IP (connection rates only; empty otherwise).
    pub ip: String,
}

/// A quota that applies: its sensor and limit (bytes per second).
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedQuota {
    pub sensor: SensorKey,
    pub limit_per_second: f64,
}

/// The quota of `kind` for a request of `user` (the principal's name; `ANONYMOUS` when not
/// authenticated, as in Kafka) with `client_id`, if any applies.
pub fn resolve(image: &ClientQuotaImage, kind: QuotaKind, user: &str, client_id: &str) -> Option<ResolvedQuota> {
    if image.is_empty() {
        return None;
    }
    let named_user = || Some(EntityName::Named(user.to_string()));
    let named_client = || Some(EntityName::Named(client_id.to_string()));
    // (user entity, client-id entity, whether the sensor is tagged with the user, the client id)
    let candidates = [
        (named_user(), named_client(), true, true),
        (named_user(), Some(EntityName::Default), true, true),
        (named_user(), None, true, false),
        (Some(EntityName::Default), named_client(), true, true),
        (Some(EntityName::Default), Some(EntityName::Default), true, true),
        (Some(EntityName::Default), None, true, false),
        (None, named_client(), false, true),
        (None, Some(EntityName::Default), false, true),
    ];
    let tag = |on: bool, name: &str| if on { name.to_string() } else { String::new() };
    candidates.into_iter().find_map(|(user_name, client_name, by_user, by_client)| {
        let entity = QuotaEntity { user: user_name, client_id: client_name, ip: None };
        image.value(&entity, kind.key()).map(|limit| ResolvedQuota {
            sensor: SensorKey {
                kind,
                user: tag(by_user, user),
                client_id: tag(by_client, client_id),
                ip: String::new(),
            },
            limit_per_second: limit,
        })
    })
}

/// The `connection_creation_rate` of connections from `ip`: the IP's own entity, else the
/// default IP entity (each IP then has its own sensor), as Kafka's `ConnectionQuotas`.
pub fn connection_rate(image: &ClientQuotaImage, ip: std::net::IpAddr) -> Option<ResolvedQuota> {
    if image.is_empty() {
        return None;
    }
    let ip = ip.to_canonical().to_string();
    [EntityName::Named(ip.clone()), EntityName::Default].into_iter().find_map(|name| {
        let entity = QuotaEntity { user: None, client_id: None, ip: Some(name) };
        image.value(&entity, QuotaKind::Connection.key()).map(|limit| ResolvedQuota {
            sensor: SensorKey {
                kind: QuotaKind::Connection,
                user: String::new(),
                client_id: String::new(),
                ip: ip.clone(),
            },
            limit_per_second: limit,
        })
    })
}

/// The quota user name of a principal (`User:alice` → `alice`).
pub fn quota_user(principal: &str) -> &str {
    principal.split_once(':').map_or(principal, |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::super::image::{QuotaAlteration, QuotaCommand};
    use super::*;

    /// An entity as (type, name) pairs.
    type Pairs<'a> = &'a [(&'a str, Option<&'a str>)];

    fn image(quotas: &[(Pairs<'_>, f64)]) -> ClientQuotaImage {
        let mut image = ClientQuotaImage::default();
        let alterations = quotas
            .iter()
            .map(|(pairs, limit)| {
                let entity = QuotaEntity::from_pairs(pairs.iter().copied()).unwrap();
                QuotaAlteration::new(entity, &[("producer_byte_rate".to_string(), *limit, false)]).unwrap()
            })
            .collect();
        image.apply(QuotaCommand::Alter { alterations });
        image
    }

    fn applied(image: &ClientQuotaImage, user: &str, client: &str) -> Option<(f64, String, String)> {
        resolve(image, QuotaKind::Produce, user, client)
            .map(|q| (q.limit_per_second, q.sensor.user.clone(), q.sensor.client_id.clone()))
    }

    #[test]
    fn the_most_specific_entity_wins_in_kafkas_order() {
        let levels: Vec<(Pairs<'_>, f64)> = vec![
            (&[("user", Some("u")), ("client-id", Some("c"))], 1.0),
            (&[("user", Some("u")), ("client-id", None)], 2.0),
            (&[("user", Some("u"))], 3.0),
            (&[("user", None), ("client-id", Some("c"))], 4.0),
            (&[("user", None), ("client-id", None)], 5.0),
            (&[("user", None)], 6.0),
            (&[("client-id", Some("c"))], 7.0),
            (&[("client-id", None)], 8.0),
        ];
        let tags = ["uc", "uc", "u", "uc", "uc", "u", "c", "c"];
        // Remove levels from the most specific down: the next one takes over each time.
        for first in 0..levels.len() {
            let image = image(&levels[first..]);
            let (limit, user, client) = applied(&image, "u", "c").expect("a quota applies");
            assert_eq!(limit, (first + 1) as f64);
            let expected = tags[first];
            assert_eq!(user.is_empty(), !expected.contains('u'), "level {}", first + 1);
            assert_eq!(client.is_empty(), !expected.contains('c'), "level {}", first + 1);
        }
    }

    #[test]
    fn quotas_of_other_entities_and_kinds_do_not_apply() {
        let image = image(&[(&[("user", Some("other"))], 1.0), (&[("client-id", Some("other"))], 2.0)]);
        assert_eq!(applied(&image, "u", "c"), None);
        assert_eq!(applied(&image, "other", "c").map(|a| a.0), Some(1.0));
        assert_eq!(resolve(&image, QuotaKind::Fetch, "other", "other"), None);
        assert_eq!(resolve(&ClientQuotaImage::default(), QuotaKind::Produce, "u", "c"), None);
    }

    #[test]
    fn connection_rates_apply_per_ip_from_the_ip_or_the_default_entity() {
        let mut image = ClientQuotaImage::default();
        let alteration = |ip: Option<&str>, limit: f64| {
            let entity = QuotaEntity::from_pairs([("ip", ip)]).unwrap();
            QuotaAlteration::new(entity, &[("connection_creation_rate".to_string(), limit, false)]).unwrap()
        };
        image.apply(QuotaCommand::Alter { alterations: vec![alteration(Some("10.0.0.1"), 3.0)] });
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        assert_eq!(connection_rate(&image, ip("10.0.0.1")).map(|q| q.limit_per_second), Some(3.0));
        assert_eq!(connection_rate(&image, ip("::ffff:10.0.0.1")).map(|q| q.limit_per_second), Some(3.0));
        assert_eq!(connection_rate(&image, ip("10.0.0.2")), None);
        image.apply(QuotaCommand::Alter { alterations: vec![alteration(None, 7.0)] });
        let other = connection_rate(&image, ip("10.0.0.2")).unwrap();
        assert_eq!((other.limit_per_second, other.sensor.ip.as_str()), (7.0, "10.0.0.2"));
        assert_eq!(resolve(&image, QuotaKind::Produce, "u", "c"), None);
    }

    #[test]
    fn default_entities_give_each_client_its_own_sensor() {
        let image = image(&[(&[("client-id", None)], 8.0)]);
        let a = resolve(&image, QuotaKind::Produce, "ANONYMOUS", "a").unwrap();
        let b = resolve(&image, QuotaKind::Produce, "ANONYMOUS", "b").unwrap();
        assert_ne!(a.sensor, b.sensor);
        assert_eq!(quota_user("User:alice"), "alice");
        assert_eq!(quota_user("ANONYMOUS"), "ANONYMOUS");
    }
}
