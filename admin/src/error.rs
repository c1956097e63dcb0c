//! The CLI's one error type and its exit codes: 0 ok, 1 a Kafka error (a broker refused, could
//! not be reached, or answered an error code), 2 usage (clap's own parse errors exit 2 too).
//!
//! Owns: turning a Kafka error code into its name plus what to do about it. Must never: print
//! (the binary prints the message once, on stderr) or exit the process.

use sluice_engine::error_code::{codes, ErrorCode};

pub const EXIT_OK: i32 = 0;
pub const EXIT_KAFKA: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub exit_code: i32,
    pub message: String,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn kafka(message: impl Into<String>) -> CliError {
        CliError { exit_code: EXIT_KAFKA, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError { exit_code: EXIT_USAGE, message: message.into() }
    }
}

impl From<String> for CliError {
    fn from(message: String) -> CliError {
        CliError::kafka(message)
    }
}

/// `NAME (code)` as Kafka spells it.
pub fn code_name(code: i16) -> String {
    format!("{} ({code})", ErrorCode(code).name())
}

/// A Kafka error code on `what`, with the broker's message and a hint where one helps.
pub fn kafka_error(what: &str, code: i16, broker_message: Option<&str>) -> CliError {
    let mut message = format!("{what}: {}", code_name(code));
    if let Some(m) = broker_message.filter(|m| !m.is_empty()) {
        message.push_str(&format!(": {m}"));
    }
    let hint = match code {
        codes::UNKNOWN_TOPIC_OR_PARTITION => "; list topics with `sluice topic list`",
        codes::TOPIC_ALREADY_EXISTS => "; pass --if-not-exists to accept an existing topic",
        codes::GROUP_ID_NOT_FOUND => "; list groups with `sluice group list`",
        codes::NON_EMPTY_GROUP => "; stop the group's consumers first",
        codes::INVALID_REPLICATION_FACTOR => "; the replication factor cannot exceed the number of brokers",
        _ => "",
    };
    message.push_str(hint);
    CliError::kafka(message)
}

/// Ok when `code` is 0, else [`kafka_error`].
pub fn check(what: &str, code: i16, broker_message: Option<&str>) -> CliResult<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(kafka_error(what, code, broker_message))
    }
}

/// The message of a missing topic, with what to do.
pub fn unknown_topic(topic: &str) -> CliError {
    CliError::kafka(format!("topic '{topic}' does not exist; list topics with `sluice topic list`"))
}
