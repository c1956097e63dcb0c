//! Kafka's topic-name rules (`org.apache.kafka.common.internals.Topic.validate`).
//!
//! Owns: name validation and the '.'/'_' collision rule. Must never: accept a name Kafka would
//! refuse — a topic name becomes a directory name, so this is also the path-safety check.

/// Longest legal topic name (255 minus room for a partition suffix, as in Kafka).
pub const MAX_TOPIC_NAME_CHARS: usize = 249;

/// Why a name is invalid (goes into the error message of INVALID_TOPIC_EXCEPTION).
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > MAX_TOPIC_NAME_CHARS {
        return Err(format!("topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_CHARS} characters"));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-')) {
        return Err(format!(
            "topic name {name:?} is illegal, it contains a character ({bad:?}) other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka refuses two topics whose names differ only by '.' vs '_' (metric names collide).
pub fn collides(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

/// Internal topics clients may not produce to or create (none yet besides the reserved names).
pub fn is_internal(name: &str) -> bool {
    name == "__consumer_offsets" || name == "__transaction_state"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        for ok in ["a", "orders", "my-topic_1.v2", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "ü", "a\0", &"x".repeat(250), "../etc"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(collides("a.b", "a_b"));
        assert!(!collides("a.b", "a.b"));
        assert!(!collides("ab", "a_b"));
    }
}
