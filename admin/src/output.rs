//! How read commands print: aligned tables for people (Kafka's CLI layouts), JSON for scripts
//! (`--output json`, one document on stdout).
//!
//! Owns: column alignment and the JSON writer. Must never: print anything but the result on
//! stdout (progress and errors go to stderr), so scripts can parse it.

use clap::{Args, ValueEnum};

pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns, as Kafka's CLI prints them.
    #[default]
    Table,
    /// One JSON document, for scripts.
    Json,
}

/// The flags every command takes.
#[derive(Args, Debug, Clone)]
pub struct Connect {
    /// A broker to start from, host:port (any node of the cluster).
    #[arg(long, default_value = DEFAULT_BOOTSTRAP, value_name = "HOST:PORT")]
    pub bootstrap: String,
}

/// The flags every read command takes.
#[derive(Args, Debug, Clone)]
pub struct ReadFlags {
    #[command(flatten)]
    pub connect: Connect,
    /// table (for people) or json (for scripts).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `rows` under `headers`, each column as wide as its widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(|c| c.as_str()).collect()));
    }
    out
}

pub fn print_json(value: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(value).expect("a JSON value serializes"));
}

/// "-" for nothing, as Kafka's CLI prints a missing value.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).filter(|v| !v.is_empty()).unwrap_or_else(|| "-".to_string())
}

/// Comma-separated node ids.
pub fn ids(list: &[i32]) -> String {
    list.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

/// Parses `k=v` (for `--config`, `--set`, `--header`).
pub fn key_value(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{arg}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["q".into(), "-".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\nq    -\n");
    }

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("k=").unwrap(), ("k".into(), "".into()));
        assert!(key_value("=v").is_err());
        assert!(key_value("novalue").is_err());
    }
}
