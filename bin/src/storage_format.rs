//! `sluice storage format`: prepares a data directory before its first start, as Kafka's
//! `kafka-storage.sh format` does — here, the first SCRAM users (`--add-scram
//! 'SCRAM-SHA-256=[name=admin,password=admin-secret]'`), so a broker whose listeners all ask
//! for SASL can be administered at all. The credentials are derived here (salt, iterations,
//! StoredKey, ServerKey) and written to `<data-dir>/bootstrap.scram.json`; the broker commits
//! them to its metadata at start ([`take_bootstrap_credentials`]) and renames the file.
//!
//! Owns: parsing `--add-scram` and writing the bootstrap file. Must never: write a password,
//! or format a directory that already holds metadata unless `--ignore-formatted` says so.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sluice_net::security::image::SecurityCommand;
use sluice_net::security::scram::{Mechanism, ScramCredential, MAX_ITERATIONS, MIN_ITERATIONS};

/// The file `storage format` writes and the broker reads once.
pub const BOOTSTRAP_FILE: &str = "bootstrap.scram.json";

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Prepare a data directory before its first start: add the first SCRAM users.
    #[command(after_help = "Example:\n  sluice storage format --data-dir ./data \\\n    \
                            --add-scram 'SCRAM-SHA-256=[name=admin,password=admin-secret]'")]
    Format(FormatArgs),
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    /// The broker's data directory (created if missing).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// `MECHANISM=[name=USER,password=PASSWORD(,iterations=N)]`, MECHANISM one of SCRAM-SHA-256,
    /// SCRAM-SHA-512; repeatable.
    #[arg(long = "add-scram", value_name = "SPEC")]
    pub add_scram: Vec<String>,
    /// Format even if the directory already holds metadata (the users are added at the next
    /// start).
    #[arg(long)]
    pub ignore_formatted: bool,
}

pub fn run(command: StorageCommand) -> i32 {
    match command {
        StorageCommand::Format(args) => match format(&args) {
            Ok(message) => {
                println!("{message}");
                0
            }
            Err(e) => {
                eprintln!("sluice storage format: {e}");
                1
            }
        },
    }
}

fn format(args: &FormatArgs) -> Result<String, String> {
    let commands = args.add_scram.iter().map(|spec| parse_add_scram(spec)).collect::<Result<Vec<_>, _>>()?;
    let dir = &args.data_dir;
    let formatted = dir.join("metadata.json").exists() || dir.join("__cluster_metadata-0").exists();
    if formatted && !args.ignore_formatted {
        return Err(format!(
            "{} already holds metadata; add users with AlterUserScramCredentials, or pass --ignore-formatted",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(BOOTSTRAP_FILE);
    let json = serde_json::to_vec_pretty(&commands).expect("commands serialize");
    let tmp = dir.join(format!("{BOOTSTRAP_FILE}.tmp"));
    // Salts and derived keys allow an offline dictionary attack: readable by the owner only.
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        file.write_all(&json).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(format!("Formatted {} with {} SCRAM credential(s)", dir.display(), commands.len()))
}

/// `SCRAM-SHA-256=[name=alice,password=secret,iterations=8192]` → an upsert command.
pub fn parse_add_scram(spec: &str) -> Result<SecurityCommand, String> {
    let bad = |why: &str| format!("--add-scram {spec:?}: {why} (expected MECHANISM=[name=USER,password=PASSWORD])");
    let (mechanism, rest) = spec.split_once('=').ok_or_else(|| bad("no '='"))?;
    let mechanism = Mechanism::from_name(mechanism.trim()).ok_or_else(|| bad("unknown mechanism"))?;
    let inner = rest.trim().strip_prefix('[').and_then(|r| r.strip_suffix(']')).ok_or_else(|| bad("no [...]"))?;
    let (mut name, mut password, mut iterations) = (None, None, 4096u32);
    for pair in inner.split(',') {
        let (k, v) = pair.split_once('=').ok_or_else(|| bad("a field without '='"))?;
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "name" => name = Some(v.to_string()),
            "password" => password = Some(v.to_string()),
            "iterations" => {
                iterations = v
                    .parse()
                    .ok()
                    .filter(|n| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(n))
                    .ok_or_else(|| bad("iterations must be 4096..=16384"))?
            }
            other => return Err(bad(&format!("unknown field {other:?}"))),
        }
    }
    let user = name.filter(|n| !n.is_empty()).ok_or_else(|| bad("no name"))?;
    let password = password.filter(|p| !p.is_empty()).ok_or_else(|| bad("no password"))?;
    let credential = ScramCredential::from_password(mechanism, &password, iterations);
    Ok(SecurityCommand::UpsertScram { user, mechanism, credential })
}

/// The credentials `storage format` left in `data_dir`, to commit at start (empty if none);
/// an unreadable file is an error (the broker refuses to start rather than skip them).
pub fn take_bootstrap_credentials(data_dir: &Path) -> Result<Vec<SecurityCommand>, String> {
    let path = data_dir.join(BOOTSTRAP_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let commands: Vec<SecurityCommand> =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            if commands.iter().any(|c| !matches!(c, SecurityCommand::UpsertScram { .. })) {
                return Err(format!("{}: only SCRAM credentials belong there", path.display()));
            }
            Ok(commands)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Marks the bootstrap credentials committed (renamed, kept for the record).
pub fn bootstrap_credentials_applied(data_dir: &Path) {
    let path = data_dir.join(BOOTSTRAP_FILE);
    let _ = std::fs::rename(&path, data_dir.join(format!("{BOOTSTRAP_FILE}.applied")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_add_scram_specs_parse() {
        let SecurityCommand::UpsertScram { user, mechanism, credential } =
            parse_add_scram("SCRAM-SHA-512=[name=admin,password=admin-secret,iterations=8192]").unwrap()
        else {
            panic!()
        };
        assert_eq!((user.as_str(), mechanism, credential.iterations), ("admin", Mechanism::Sha512, 8192));
        assert!(sluice_net::security::scram::verify_password(mechanism, &credential, "admin-secret"));
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-256=name=a,password=b",
            "SCRAM-SHA-256=[name=a]",
            "SCRAM-SHA-256=[password=b]",
            "SCRAM-SHA-256=[name=a,password=b,iterations=10]",
            "SCRAM-SHA-256=[name=a,password=b,colour=red]",
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }
}
