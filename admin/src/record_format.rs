//! How the console consumer prints a record: a kcat-like format string (`%k` key, `%v` value,
//! `%o` offset, `%p` partition, `%t` timestamp in ms, `%h` headers as `k=v,k=v`, `%T` topic,
//! `%%`; `\n`, `\t`, `\\` escapes) or one JSON object per line.
//!
//! Owns: parsing the format once and rendering records with it (pure, unit-tested). Must never:
//! fail on bytes that are not UTF-8 (they print lossily), or emit a JSON line that is not one
//! line.

use serde_json::json;

use crate::records::ConsoleRecord;

/// Kafka's console consumer prints the value alone.
pub const DEFAULT_FORMAT: &str = "%v";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Key,
    Value,
    Offset,
    Partition,
    Timestamp,
    Headers,
    Topic,
}

/// A parsed format string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFormat {
    pieces: Vec<Piece>,
}

impl RecordFormat {
    pub fn parse(format: &str) -> Result<RecordFormat, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let piece = match chars.next() {
                        Some('k') => Piece::Key,
                        Some('v') => Piece::Value,
                        Some('o') => Piece::Offset,
                        Some('p') => Piece::Partition,
                        Some('t') => Piece::Timestamp,
                        Some('h') => Piece::Headers,
                        Some('T') => Piece::Topic,
                        Some('%') => {
                            text.push('%');
                            continue;
                        }
                        other => {
                            return Err(format!(
                                "unknown format token %{}; use %k %v %o %p %t %h %T or %%",
                                other.map(String::from).unwrap_or_default()
                            ))
                        }
                    };
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
                '\\' => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('\\') => text.push('\\'),
                    Some(other) => {
                        text.push('\\');
                        text.push(other);
                    }
                    None => text.push('\\'),
                },
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(RecordFormat { pieces })
    }

    /// The record rendered (no newline added).
    pub fn render(&self, topic: &str, partition: i32, r: &ConsoleRecord) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Key => out.push_str(&lossy(r.key.as_deref())),
                Piece::Value => out.push_str(&lossy(r.value.as_deref())),
                Piece::Offset => out.push_str(&r.offset.to_string()),
                Piece::Partition => out.push_str(&partition.to_string()),
                Piece::Timestamp => out.push_str(&r.timestamp_ms.to_string()),
                Piece::Headers => out.push_str(
                    &r.headers
                        .iter()
                        .map(|(k, v)| match v {
                            Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
                            None => k.clone(),
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                Piece::Topic => out.push_str(topic),
            }
        }
        out
    }
}

fn lossy(bytes: Option<&[u8]>) -> String {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

fn lossy_or_null(bytes: Option<&[u8]>) -> serde_json::Value {
    bytes.map_or(serde_json::Value::Null, |b| json!(String::from_utf8_lossy(b)))
}

/// One JSON object (one line) per record.
pub fn json_line(topic: &str, partition: i32, r: &ConsoleRecord) -> String {
    let headers: serde_json::Map<String, serde_json::Value> =
        r.headers.iter().map(|(k, v)| (k.clone(), lossy_or_null(v.as_deref()))).collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp_ms,
        "key": lossy_or_null(r.key.as_deref()),
        "value": lossy_or_null(r.value.as_deref()),
        "headers": headers,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record() -> ConsoleRecord {
        ConsoleRecord {
            offset: 42,
            timestamp_ms: 1_733_300_000_123,
            key: Some(Bytes::from_static(b"k1")),
            value: Some(Bytes::from_static(b"hello\nworld")),
            headers: vec![("a".into(), Some(Bytes::from_static(b"1"))), ("b".into(), None)],
        }
    }

    #[test]
    fn every_token_renders() {
        let f = RecordFormat::parse("%T/%p@%o %t [%h] %k=%v 100%%\\t.").unwrap();
        assert_eq!(f.render("orders", 3, &record()), "orders/3@42 1733300000123 [a=1,b] k1=hello\nworld 100%\t.");
        assert_eq!(RecordFormat::parse(DEFAULT_FORMAT).unwrap().render("t", 0, &record()), "hello\nworld");
        let no_key = ConsoleRecord { key: None, ..record() };
        assert_eq!(RecordFormat::parse("<%k>").unwrap().render("t", 0, &no_key), "<>");
    }

    #[test]
    fn unknown_tokens_are_refused_with_the_list() {
        let e = RecordFormat::parse("%x").unwrap_err();
        assert!(e.contains("%x") && e.contains("%k %v"), "{e}");
        assert!(RecordFormat::parse("ends with %").is_err());
    }

    #[test]
    fn json_lines_are_one_line_with_nulls_for_missing_keys() {
        let line = json_line("orders", 1, &ConsoleRecord { key: None, ..record() });
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["key"], serde_json::Value::Null);
        assert_eq!(v["value"], "hello\nworld");
        assert_eq!(v["offset"], 42);
        assert_eq!(v["partition"], 1);
        assert_eq!(v["headers"]["a"], "1");
        assert_eq!(v["headers"]["b"], serde_json::Value::Null);
    }
}
