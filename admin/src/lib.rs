//! sluice's admin CLI: Kafka's command-line habits as subcommands of the one `sluice` binary —
//! `topic`, `produce`, `consume`, `group`, `cluster`, `configs` — speaking the Kafka protocol
//! to any Kafka-compatible broker (sluice, Apache Kafka, Redpanda).
//!
//! Owns: the commands' flags (clap), their requests (the `kafka-protocol` crate's messages over
//! a blocking connection, [`client`]), routing to leaders and coordinators ([`session`]) and
//! their output ([`output`]: tables, or JSON with `--output json`). The `sluice` binary parses
//! the command line and calls each module's `run`, then [`exit_code`].
//!
//! Must never: link the broker (it talks to brokers only over the wire), or print anything
//! but results on stdout (messages and errors go to stderr).

pub mod client;
pub mod cluster;
pub mod configs;
pub mod console_consume;
pub mod console_produce;
pub mod error;
pub mod group;
pub mod hot;
pub mod membership;
pub mod offsets;
pub mod output;
pub mod partitioner;
pub mod record_format;
pub mod records;
pub mod reset_offsets;
pub mod session;
pub mod topic;

pub use error::{CliError, CliResult};

/// Prints a failure on stderr and returns the process exit code (0 ok, 1 Kafka, 2 usage).
pub fn exit_code(result: CliResult<()>) -> i32 {
    match result {
        Ok(()) => error::EXIT_OK,
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.exit_code
        }
    }
}

/// A command piped into `head` ends quietly when the reader goes away, as Unix tools do:
/// restores SIGPIPE's default action (Rust's runtime ignores it, so `println!` would panic).
/// For the CLI commands only; the broker keeps SIGPIPE ignored.
pub fn restore_sigpipe() {
    // SAFETY: changes one signal's disposition before the command starts any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
