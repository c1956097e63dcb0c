//! One connection's SASL authentication (Kafka's `SaslServerAuthenticator`) as a pure state
//! machine: SaslHandshake picks a mechanism of `sasl.enabled.mechanisms`, SaslAuthenticate
//! carries its tokens, and the connection is authenticated as `User:<name>` at the end.
//! PLAIN checks the password against the user's SCRAM credential (as Redpanda does): that is
//! a PBKDF2, so the session hands it to the caller ([`Step::CheckPassword`]) to run off the
//! shard thread.
//!
//! Owns: [`SaslSession`]. Must never: authenticate on a failed or partial exchange, tell the
//! client which part of its credentials was wrong, or accept tokens before a handshake.

use super::scram::{Mechanism, ScramCredential, ServerExchange};

use crate::handlers::codes::{ILLEGAL_SASL_STATE, UNSUPPORTED_SASL_MECHANISM};

/// A SASL mechanism sluice serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

impl SaslMechanism {
    pub fn from_name(name: &str) -> Option<SaslMechanism> {
        match name {
            "PLAIN" => Some(SaslMechanism::Plain),
            other => Mechanism::from_name(other).map(SaslMechanism::Scram),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
        }
    }
}

/// Parses `sasl.enabled.mechanisms` (comma-separated; Kafka's default is GSSAPI, which sluice
/// does not serve, so its default here is every mechanism it does).
pub fn parse_enabled_mechanisms(value: &str) -> Result<Vec<SaslMechanism>, String> {
    let mut out = Vec::new();
    for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
            format!("sasl.enabled.mechanisms: {name} is not served (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if !out.contains(&mechanism) {
            out.push(mechanism);
        }
    }
    if out.is_empty() {
        return Err("sasl.enabled.mechanisms: no mechanism".into());
    }
    Ok(out)
}

/// What the connection does with a SaslAuthenticate's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Answer with these bytes and wait for the next token.
    Continue(Vec<u8>),
    /// Authenticated as `principal`; answer with these bytes.
    Done { response: Vec<u8>, principal: String },
    /// PLAIN: check `password` against `credential` (off the shard), then call
    /// [`SaslSession::password_checked`].
    CheckPassword { user: String, mechanism: Mechanism, credential: ScramCredential, password: String },
    /// Answer SASL_AUTHENTICATION_FAILED (the message is for the log; the client's is generic)
    /// and close the connection.
    Failed(String),
}

enum State {
    AwaitingHandshake,
    Plain,
    Scram(ServerExchange),
    /// `known`: the user has a credential (an unknown one is checked against a dummy, so both
    /// take as long, and fails whatever the check says).
    CheckingPassword {
        user: String,
        known: bool,
    },
    Authenticated,
    Failed,
}

/// One connection's authentication.
pub struct SaslSession {
    enabled: Vec<SaslMechanism>,
    state: State,
}

impl SaslSession {
    pub fn new(enabled: Vec<SaslMechanism>) -> SaslSession {
        SaslSession { enabled, state: State::AwaitingHandshake }
    }

    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    /// SaslHandshake: `Ok` if `mechanism` is enabled (the exchange starts), else the error
    /// code (UNSUPPORTED_SASL_MECHANISM, or ILLEGAL_SASL_STATE mid-exchange).
    pub fn handshake(&mut self, mechanism: &str) -> Result<(), i16> {
        if !matches!(self.state, State::AwaitingHandshake | State::Authenticated) {
            return Err(ILLEGAL_SASL_STATE);
        }
        match SaslMechanism::from_name(mechanism).filter(|m| self.enabled.contains(m)) {
            Some(SaslMechanism::Plain) => self.state = State::Plain,
            Some(SaslMechanism::Scram(m)) => self.state = State::Scram(ServerExchange::new(m)),
            None => return Err(UNSUPPORTED_SASL_MECHANISM),
        }
        Ok(())
    }

    /// Whether a handshake picked a mechanism and the exchange is under way.
    pub fn exchanging(&self) -> bool {
        matches!(self.state, State::Plain | State::Scram(_) | State::CheckingPassword { .. })
    }

    /// SaslAuthenticate's bytes. `lookup(user, mechanism)` finds a SCRAM credential.
    pub fn authenticate(&mut self, bytes: &[u8], lookup: impl Fn(&str, Mechanism) -> Option<ScramCredential>) -> Step {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Plain => match parse_plain(bytes) {
                Ok((user, password)) => {
                    let found = [Mechanism::Sha256, Mechanism::Sha512]
                        .into_iter()
                        .find_map(|m| lookup(&user, m).map(|c| (m, c)));
                    let known = found.is_some();
                    let (mechanism, credential) =
                        found.unwrap_or_else(|| (Mechanism::Sha256, dummy_credential().clone()));
                    self.state = State::CheckingPassword { user: user.clone(), known };
                    Step::CheckPassword { user, mechanism, credential, password }
                }
                Err(reason) => Step::Failed(reason),
            },
            State::Scram(mut exchange) => {
                let mechanism = exchange.mechanism();
                if exchange.awaits_client_first() {
                    match exchange.client_first(bytes, |user| lookup(user, mechanism), None) {
                        Ok(reply) => {
                            self.state = State::Scram(exchange);
                            Step::Continue(reply)
                        }
                        Err(e) => Step::Failed(format!("{}: {}", mechanism.name(), e.0)),
                    }
                } else {
                    match exchange.client_final(bytes) {
                        Ok((response, user)) => {
                            self.state = State::Authenticated;
                            Step::Done { response, principal: format!("User:{user}") }
                        }
                        Err(e) => Step::Failed(format!("{}: {}", mechanism.name(), e.0)),
                    }
                }
            }
            State::AwaitingHandshake | State::Authenticated => {
                Step::Failed("SaslAuthenticate without a SaslHandshake".into())
            }
            State::CheckingPassword { .. } | State::Failed => Step::Failed("SASL exchange already failed".into()),
        }
    }

    /// The outcome of a [`Step::CheckPassword`].
    pub fn password_checked(&mut self, ok: bool) -> Step {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::CheckingPassword { user, known: true } if ok => {
                self.state = State::Authenticated;
                Step::Done { response: Vec::new(), principal: format!("User:{user}") }
            }
            State::CheckingPassword { user, known: true } => {
                Step::Failed(format!("PLAIN: wrong password for {user:?}"))
            }
            State::CheckingPassword { user, known: false } => Step::Failed(format!("PLAIN: unknown user {user:?}")),
            _ => Step::Failed("no password check under way".into()),
        }
    }
}

/// What an unknown PLAIN user's password is checked against (a random password: nothing
/// matches it, and the caller fails an unknown user anyway).
fn dummy_credential() -> &'static ScramCredential {
    static DUMMY: std::sync::OnceLock<ScramCredential> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut password = [0u8; 16];
        getrandom::getrandom(&mut password).expect("the OS random source");
        let password: String = password.iter().map(|b| format!("{b:02x}")).collect();
        ScramCredential::from_password(Mechanism::Sha256, &password, super::scram::MIN_ITERATIONS)
    })
}

/// PLAIN's message: `[authzid] NUL authcid NUL passwd` (RFC 4616).
fn parse_plain(bytes: &[u8]) -> Result<(String, String), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "PLAIN: message is not UTF-8".to_string())?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN: malformed message".into());
    };
    if user.is_empty() || password.is_empty() {
        return Err("PLAIN: empty user name or password".into());
    }
    if !authzid.is_empty() && authzid != user {
        return Err("PLAIN: authorization id differs from the user name".into());
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SaslSession {
        SaslSession::new(parse_enabled_mechanisms("PLAIN,SCRAM-SHA-256").unwrap())
    }

    fn store(password: &str) -> impl Fn(&str, Mechanism) -> Option<ScramCredential> {
        let credential = ScramCredential::from_password(Mechanism::Sha256, password, 4096);
        move |user, m| (user == "alice" && m == Mechanism::Sha256).then(|| credential.clone())
    }

    #[test]
    fn plain_asks_for_a_password_check_and_authenticates_only_if_it_passed() {
        let mut s = session();
        assert_eq!(s.handshake("PLAIN"), Ok(()));
        let step = s.authenticate(b"\0alice\0secret", store("secret"));
        let Step::CheckPassword { user, mechanism, credential, password } = step else { panic!("{step:?}") };
        assert_eq!(user, "alice");
        assert!(super::super::scram::verify_password(mechanism, &credential, &password));
        assert_eq!(s.password_checked(true), Step::Done { response: vec![], principal: "User:alice".into() });

        let mut s = session();
        s.handshake("PLAIN").unwrap();
        assert!(matches!(s.authenticate(b"\0alice\0wrong", store("secret")), Step::CheckPassword { .. }));
        assert!(matches!(s.password_checked(false), Step::Failed(_)));
        // An unknown user is checked like a known one (same cost) and always fails.
        let mut s = session();
        s.handshake("PLAIN").unwrap();
        assert!(matches!(s.authenticate(b"\0bob\0secret", store("secret")), Step::CheckPassword { .. }));
        assert!(matches!(s.password_checked(true), Step::Failed(_)));
        for garbage in [&b"alice"[..], b"\0\0", b"x\0alice\0secret", b"\0a\0b\0c", &[0xff]] {
            let mut s = session();
            s.handshake("PLAIN").unwrap();
            assert!(matches!(s.authenticate(garbage, store("secret")), Step::Failed(_)), "{garbage:?}");
        }
    }

    #[test]
    fn mechanisms_must_be_enabled_and_tokens_follow_a_handshake() {
        let mut s = session();
        assert_eq!(s.handshake("SCRAM-SHA-512"), Err(UNSUPPORTED_SASL_MECHANISM));
        assert_eq!(s.handshake("GSSAPI"), Err(UNSUPPORTED_SASL_MECHANISM));
        assert!(matches!(session().authenticate(b"n,,n=alice,r=x", store("s")), Step::Failed(_)));
        s.handshake("SCRAM-SHA-256").unwrap();
        assert_eq!(s.handshake("PLAIN"), Err(ILLEGAL_SASL_STATE), "mid-exchange");
        assert!(parse_enabled_mechanisms("GSSAPI").is_err());
        assert!(parse_enabled_mechanisms("").is_err());
    }

    #[test]
    fn a_scram_exchange_continues_then_authenticates() {
        let mut s = session();
        s.handshake("SCRAM-SHA-256").unwrap();
        let Step::Continue(first) = s.authenticate(b"n,,n=alice,r=abc", store("secret")) else { panic!() };
        assert!(String::from_utf8(first).unwrap().starts_with("r=abc"));
        // A wrong proof fails (the RFC vector test in scram.rs covers a right one).
        assert!(matches!(s.authenticate(b"c=biws,r=abc,p=AAAA", store("secret")), Step::Failed(_)));
    }
}
