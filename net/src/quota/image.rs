//! The client-quota part of the cluster metadata: quota values by entity, changed only by
//! committed [`QuotaCommand`]s (AlterClientQuotas), so every broker — and a restarted one —
//! has the same (Kafka's `QuotaRecord`s in the metadata log).
//!
//! An entity is a set of (type, name) pairs: `user`, `client-id` (together or alone) or `ip`
//! (alone); a name of `None` is the type's default entity (`<default>`). Keys: `user` and
//! `client-id` entities take `producer_byte_rate`, `consumer_byte_rate` (whole numbers),
//! `request_percentage` and `controller_mutation_rate`; `ip` entities take
//! `connection_creation_rate` (a whole number). Validation is Kafka's
//! (`ClientQuotaControlManager`): an empty entity, a duplicate type, an unknown type, an empty
//! name, an `ip` combined with another type, an unknown key or a fraction where a whole number
//! is needed are INVALID_REQUEST. sluice also refuses values that are not positive and finite
//! (INVALID_REQUEST): a zero or negative rate cannot be enforced.
//!
//! Also here: DescribeClientQuotas' filter matching (Kafka's `ClientQuotasImage.describe`).
//!
//! Owns: [`ClientQuotaImage`]. Pure: no I/O, no time. Must never: apply a command its
//! validation refused, or keep an entity with no values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metadata_image::{codes, MetadataError};

/// Entity types.
pub const USER: &str = "user";
pub const CLIENT_ID: &str = "client-id";
pub const IP: &str = "ip";

/// Quota keys.
pub const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
pub const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
pub const REQUEST_PERCENTAGE: &str = "request_percentage";
pub const CONTROLLER_MUTATION_RATE: &str = "controller_mutation_rate";
pub const CONNECTION_CREATION_RATE: &str = "connection_creation_rate";

/// Most quota entities a cluster keeps (a limit on everything; Kafka has none).
pub const MAX_QUOTA_ENTITIES: usize = 100_000;

/// One entity type's name: a named entity or the type's default.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EntityName {
    Default,
    Named(String),
}

impl EntityName {
    /// From the protocol's nullable name (null = default).
    pub fn from_wire(name: Option<&str>) -> EntityName {
        match name {
            None => EntityName::Default,
            Some(n) => EntityName::Named(n.to_string()),
        }
    }

    pub fn to_wire(&self) -> Option<&str> {
        match self {
            EntityName::Default => None,
            EntityName::Named(n) => Some(n),
        }
    }
}

/// A quota entity: which types it has, and their names.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QuotaEntity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<EntityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<EntityName>,
}

impl QuotaEntity {
    /// Builds and validates an entity from the protocol's (type, nullable name) pairs.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Result<QuotaEntity, MetadataError> {
        let mut entity = QuotaEntity::default();
        let mut count = 0;
        for (entity_type, name) in pairs {
            count += 1;
            let slot = match entity_type {
                USER => &mut entity.user,
                CLIENT_ID => &mut entity.client_id,
                IP => &mut entity.ip,
                other => return Err(invalid(format!("Unhandled client quota entity type: {other}"))),
            };
            if slot.is_some() {
                return Err(invalid(format!(
                    "Invalid empty client quota entity, duplicate entity entry {entity_type}"
                )));
            }
            if name == Some("") {
                return Err(invalid(format!("Empty {entity_type} not supported")));
            }
            *slot = Some(EntityName::from_wire(name));
        }
        if count == 0 {
            return Err(invalid("Invalid empty client quota entity".into()));
        }
        if entity.ip.is_some() && (entity.user.is_some() || entity.client_id.is_some()) {
            return Err(invalid("Invalid empty client quota entity".into()));
        }
        if let Some(EntityName::Named(ip)) = &entity.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(format!("{ip} is not a valid IP or resolvable host.")));
            }
        }
        Ok(entity)
    }

    /// The protocol's (type, nullable name) pairs, in a stable order.
    pub fn pairs(&self) -> Vec<(&'static str, Option<&str>)> {
        let mut out = Vec::with_capacity(2);
        for (entity_type, name) in [(USER, &self.user), (CLIENT_ID, &self.client_id), (IP, &self.ip)] {
            if let Some(name) = name {
                out.push((entity_type, name.to_wire()));
            }
        }
        out
    }

    fn name_of(&self, entity_type: &str) -> Option<&EntityName> {
        match entity_type {
            USER => self.user.as_ref(),
            CLIENT_ID => self.client_id.as_ref(),
            IP => self.ip.as_ref(),
            _ => None,
        }
    }

    fn type_count(&self) -> usize {
        [&self.user, &self.client_id, &self.ip].iter().filter(|n| n.is_some()).count()
    }

    /// Whether `key` is a quota of this kind of entity, and whether its value must be whole.
    fn key_kind(&self, key: &str) -> Option<ValueKind> {
        if self.ip.is_some() {
            return (key == CONNECTION_CREATION_RATE).then_some(ValueKind::Whole);
        }
        match key {
            PRODUCER_BYTE_RATE | CONSUMER_BYTE_RATE => Some(ValueKind::Whole),
            REQUEST_PERCENTAGE | CONTROLLER_MUTATION_RATE => Some(ValueKind::Fraction),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueKind {
    Whole,
    Fraction,
}

fn invalid(message: String) -> MetadataError {
    MetadataError::new(codes::INVALID_REQUEST, message)
}

/// A quota value: a finite, positive `f64`, compared by its bits (so the image can be `Eq`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaValue(pub f64);

impl PartialEq for QuotaValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for QuotaValue {}

/// One AlterClientQuotas entry, validated: set these keys, remove those.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaAlteration {
    pub entity: QuotaEntity,
    pub set: BTreeMap<String, QuotaValue>,
    pub remove: Vec<String>,
}

impl QuotaAlteration {
    /// Validates one entry's ops: (key, value, remove). A key twice is INVALID_REQUEST, as is
    /// setting an unknown key or a bad value.
    pub fn new(entity: QuotaEntity, ops: &[(String, f64, bool)]) -> Result<QuotaAlteration, MetadataError> {
        let mut set = BTreeMap::new();
        let mut remove = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (key, value, removal) in ops {
            if !seen.insert(key.as_str()) {
                return Err(invalid(format!("Duplicate quota key {key} not updating quota for this entity")));
            }
            // A removal is not checked against the keys (Kafka removes what is there and
            // ignores the rest).
            if *removal {
                remove.push(key.clone());
                continue;
            }
            let Some(kind) = entity.key_kind(key) else {
                return Err(invalid(format!("Invalid configuration key {key}")));
            };
            if !value.is_finite() || *value <= 0.0 {
                return Err(invalid(format!("Quota {key} must be a positive number, got {value}")));
            }
            if kind == ValueKind::Whole && (value.round() - value).abs() > 1e-6 {
                return Err(invalid(format!("Configuration {key} must be a Long value")));
            }
            set.insert(key.clone(), QuotaValue(*value));
        }
        Ok(QuotaAlteration { entity, set, remove })
    }
}

/// A change to the client quotas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaCommand {
    /// AlterClientQuotas: each alteration applied in order (they were validated one by one).
    Alter { alterations: Vec<QuotaAlteration> },
}

/// One entity DescribeClientQuotas matched, with its values.
pub type DescribedEntity<'a> = (&'a QuotaEntity, &'a BTreeMap<String, QuotaValue>);

/// Every client quota, by entity. Serialized as a list (JSON object keys must be strings).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientQuotaImage {
    pub entities: BTreeMap<QuotaEntity, BTreeMap<String, QuotaValue>>,
}

#[derive(Serialize, Deserialize)]
struct EntityQuotas {
    entity: QuotaEntity,
    values: BTreeMap<String, QuotaValue>,
}

impl Serialize for ClientQuotaImage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.entities.iter().map(|(e, v)| EntityQuotas { entity: e.clone(), values: v.clone() }))
    }
}

impl<'de> Deserialize<'de> for ClientQuotaImage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<EntityQuotas>::deserialize(deserializer)?;
        Ok(ClientQuotaImage { entities: list.into_iter().map(|e| (e.entity, e.values)).collect() })
    }
}

impl ClientQuotaImage {
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// The value of `key` set on exactly `entity`.
    pub fn value(&self, entity: &QuotaEntity, key: &str) -> Option<f64> {
        self.entities.get(entity).and_then(|v| v.get(key)).map(|v| v.0)
    }

    pub fn validate(&self, command: &QuotaCommand) -> Result<(), MetadataError> {
        let QuotaCommand::Alter { alterations } = command;
        let new_entities = alterations.iter().filter(|a| !self.entities.contains_key(&a.entity)).count();
        if self.entities.len() + new_entities > MAX_QUOTA_ENTITIES {
            return Err(invalid(format!("more than {MAX_QUOTA_ENTITIES} client quota entities")));
        }
        for a in alterations {
            // Re-checked here: the command may come from the log of another version.
            let ops: Vec<(String, f64, bool)> = a
                .set
                .iter()
                .map(|(k, v)| (k.clone(), v.0, false))
                .chain(a.remove.iter().map(|k| (k.clone(), 0.0, true)))
                .collect();
            QuotaAlteration::new(a.entity.clone(), &ops)?;
        }
        Ok(())
    }

    pub fn apply(&mut self, command: QuotaCommand) {
        let QuotaCommand::Alter { alterations } = command;
        for a in alterations {
            let values = self.entities.entry(a.entity.clone()).or_default();
            for key in &a.remove {
                values.remove(key);
            }
            values.extend(a.set);
            if values.is_empty() {
                self.entities.remove(&a.entity);
            }
        }
    }

    /// DescribeClientQuotas: the entities matching `components` — (entity type, match type,
    /// match) with Kafka's match types 0 exact, 1 default, 2 any — and `strict` (an entity must
    /// have no other types). Errors: (code, message) for the whole response.
    pub fn describe(
        &self,
        components: &[(String, i8, Option<String>)],
        strict: bool,
    ) -> Result<Vec<DescribedEntity<'_>>, (i16, String)> {
        // Per filtered type: Some(name) must equal, None any name (the default included).
        let mut filters: Vec<(&str, Option<EntityName>)> = Vec::new();
        for (entity_type, match_type, name) in components {
            let bad = |m: String| Err((codes::INVALID_REQUEST, m));
            if entity_type.is_empty() {
                return bad("Invalid empty entity type.".into());
            }
            if filters.iter().any(|(t, _)| *t == entity_type.as_str()) {
                return bad(format!("Entity type {entity_type} cannot appear more than once in the filter."));
            }
            if ![USER, CLIENT_ID, IP].contains(&entity_type.as_str()) {
                return Err((codes::UNSUPPORTED_VERSION, format!("Unsupported entity type {entity_type}")));
            }
            let wanted = match (match_type, name) {
                (0, Some(n)) => Some(EntityName::Named(n.clone())),
                (0, None) => return bad("Request specified MATCH_TYPE_EXACT, but set match string to null.".into()),
                (1, None) => Some(EntityName::Default),
                (1, Some(_)) => {
                    return bad("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.".into())
                }
                (2, None) => None,
                (2, Some(_)) => {
                    return bad("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.".into())
                }
                (other, _) => return bad(format!("Unknown match type {other}")),
            };
            filters.push((entity_type.as_str(), wanted));
        }
        let has = |t: &str| filters.iter().any(|(f, _)| *f == t);
        if has(IP) && (has(USER) || has(CLIENT_ID)) {
            return Err((
                codes::INVALID_REQUEST,
                "Invalid entity filter component combination. IP filter component should not be used with user or \
                 clientId filter component."
                    .into(),
            ));
        }
        if filters.is_empty() && strict {
            return Ok(Vec::new());
        }
        Ok(self
            .entities
            .iter()
            .filter(|(entity, _)| {
                filters.iter().all(|(t, wanted)| match (entity.name_of(t), wanted) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(name), Some(w)) => name == w,
                })
            })
            .filter(|(entity, _)| !strict || entity.type_count() == filters.len())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(pairs: &[(&str, Option<&str>)]) -> QuotaEntity {
        QuotaEntity::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn alter(e: &QuotaEntity, ops: &[(&str, f64, bool)]) -> Result<QuotaAlteration, MetadataError> {
        let ops: Vec<(String, f64, bool)> = ops.iter().map(|(k, v, r)| (k.to_string(), *v, *r)).collect();
        QuotaAlteration::new(e.clone(), &ops)
    }

    #[test]
    fn entities_are_validated_as_kafka_does() {
        let err = |pairs: &[(&str, Option<&str>)]| QuotaEntity::from_pairs(pairs.iter().copied()).unwrap_err().code;
        assert_eq!(err(&[]), codes::INVALID_REQUEST);
        assert_eq!(err(&[("user", Some("a")), ("user", Some("b"))]), codes::INVALID_REQUEST);
        assert_eq!(err(&[("group", Some("a"))]), codes::INVALID_REQUEST);
        assert_eq!(err(&[("user", Some(""))]), codes::INVALID_REQUEST);
        assert_eq!(err(&[("ip", Some("1.2.3.4")), ("user", Some("a"))]), codes::INVALID_REQUEST);
        assert_eq!(err(&[("ip", Some("not an ip"))]), codes::INVALID_REQUEST);
        let e = entity(&[("client-id", None), ("user", Some("alice"))]);
        assert_eq!(e.pairs(), vec![("user", Some("alice")), ("client-id", None)]);
        assert!(QuotaEntity::from_pairs([("ip", None)]).is_ok());
    }

    #[test]
    fn keys_and_values_are_validated_per_entity_kind() {
        let user = entity(&[("user", Some("alice"))]);
        let ip = entity(&[("ip", Some("10.0.0.1"))]);
        assert!(alter(&user, &[("producer_byte_rate", 1024.0, false), ("request_percentage", 12.5, false)]).is_ok());
        assert_eq!(alter(&user, &[("producer_byte_rate", 10.5, false)]).unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(alter(&user, &[("bogus", 1.0, false)]).unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(alter(&user, &[("connection_creation_rate", 1.0, false)]).unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(alter(&ip, &[("producer_byte_rate", 1.0, false)]).unwrap_err().code, codes::INVALID_REQUEST);
        assert!(alter(&ip, &[("connection_creation_rate", 5.0, false)]).is_ok());
        assert_eq!(alter(&user, &[("consumer_byte_rate", 0.0, false)]).unwrap_err().code, codes::INVALID_REQUEST);
        assert_eq!(alter(&user, &[("consumer_byte_rate", f64::NAN, false)]).unwrap_err().code, codes::INVALID_REQUEST);
        let dup = alter(&user, &[("consumer_byte_rate", 1.0, false), ("consumer_byte_rate", 2.0, false)]);
        assert_eq!(dup.unwrap_err().code, codes::INVALID_REQUEST);
        // Removal of an unset or unknown key is a no-op, as in Kafka.
        assert!(alter(&user, &[("consumer_byte_rate", 0.0, true)]).is_ok());
        assert!(alter(&user, &[("bogus", 0.0, true)]).is_ok());
    }

    #[test]
    fn alterations_apply_and_round_trip_through_json() {
        let mut image = ClientQuotaImage::default();
        let user = entity(&[("user", Some("alice"))]);
        let default_client = entity(&[("client-id", None)]);
        let command = QuotaCommand::Alter {
            alterations: vec![
                alter(&user, &[("producer_byte_rate", 1024.0, false)]).unwrap(),
                alter(&default_client, &[("consumer_byte_rate", 2048.0, false)]).unwrap(),
            ],
        };
        image.validate(&command).unwrap();
        image.apply(command);
        assert_eq!(image.value(&user, "producer_byte_rate"), Some(1024.0));
        let json = serde_json::to_string(&image).unwrap();
        assert_eq!(serde_json::from_str::<ClientQuotaImage>(&json).unwrap(), image);
        // Removing the last value removes the entity.
        image.apply(QuotaCommand::Alter {
            alterations: vec![alter(&user, &[("producer_byte_rate", 0.0, true)]).unwrap()],
        });
        assert!(!image.entities.contains_key(&user));
        assert_eq!(image.entities.len(), 1);
    }

    #[test]
    fn describe_filters_like_kafka() {
        let mut image = ClientQuotaImage::default();
        let entities = [
            entity(&[("user", Some("alice"))]),
            entity(&[("user", Some("alice")), ("client-id", Some("app"))]),
            entity(&[("user", None)]),
            entity(&[("client-id", None)]),
            entity(&[("ip", Some("10.0.0.1"))]),
        ];
        let alterations = entities
            .iter()
            .map(|e| {
                let key = if e.ip.is_some() { "connection_creation_rate" } else { "producer_byte_rate" };
                alter(e, &[(key, 100.0, false)]).unwrap()
            })
            .collect();
        image.apply(QuotaCommand::Alter { alterations });
        let count = |components: &[(&str, i8, Option<&str>)], strict: bool| {
            let c: Vec<(String, i8, Option<String>)> =
                components.iter().map(|(t, m, n)| (t.to_string(), *m, n.map(str::to_string))).collect();
            image.describe(&c, strict).map(|v| v.len())
        };
        assert_eq!(count(&[], false), Ok(5));
        assert_eq!(count(&[], true), Ok(0));
        assert_eq!(count(&[("user", 0, Some("alice"))], false), Ok(2));
        assert_eq!(count(&[("user", 0, Some("alice"))], true), Ok(1));
        assert_eq!(count(&[("user", 1, None)], false), Ok(1));
        assert_eq!(count(&[("user", 2, None)], false), Ok(3), "any name, the default included (as Kafka)");
        assert_eq!(count(&[("user", 2, None), ("client-id", 2, None)], true), Ok(1));
        assert_eq!(count(&[("client-id", 1, None)], true), Ok(1));
        assert_eq!(count(&[("ip", 2, None)], false), Ok(1));
        assert_eq!(count(&[("user", 0, None)], false).unwrap_err().0, codes::INVALID_REQUEST);
        assert_eq!(count(&[("user", 1, Some("x"))], false).unwrap_err().0, codes::INVALID_REQUEST);
        assert_eq!(count(&[("user", 2, None), ("user", 2, None)], false).unwrap_err().0, codes::INVALID_REQUEST);
        assert_eq!(count(&[("ip", 2, None), ("user", 2, None)], false).unwrap_err().0, codes::INVALID_REQUEST);
        assert_eq!(count(&[("group", 2, None)], false).unwrap_err().0, codes::UNSUPPORTED_VERSION);
        assert_eq!(count(&[("user", 7, None)], false).unwrap_err().0, codes::INVALID_REQUEST);
    }
}
