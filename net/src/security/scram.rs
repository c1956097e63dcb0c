//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them: the credential
//! kept per user and mechanism (salt, iterations, StoredKey, ServerKey — never the password),
//! and the server's side of one exchange as a pure state machine.
//!
//! Owns: [`ScramCredential`], [`ServerExchange`] and the PLAIN check against a credential
//! ([`verify_password`]). Must never: keep or log a password, compare secrets in variable
//! time, or say which part of a failed authentication was wrong.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's bounds on SCRAM iterations (AlterUserScramCredentials refuses others).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;
/// The longest client message of an exchange we parse.
const MAX_MESSAGE_BYTES: usize = 4096;

/// A SCRAM mechanism (Kafka's `ScramMechanism`: 1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "SCRAM-SHA-256" => Some(Mechanism::Sha256),
            "SCRAM-SHA-512" => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<Mechanism> {
        match code {
            1 => Some(Mechanism::Sha256),
            2 => Some(Mechanism::Sha512),
            _ => None,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => {
                let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// PBKDF2 with this mechanism's HMAC (RFC 5802's `Hi`).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            Mechanism::Sha512 => pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
        }
    }
}

/// What the broker keeps of one user's password for one mechanism. Its `Debug` shows the
/// iterations only (commands are logged).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramCredential {{ iterations: {}, .. }}", self.iterations)
    }
}

impl ScramCredential {
    /// From what AlterUserScramCredentials carries (the client salts and iterates).
    pub fn from_salted_password(mechanism: Mechanism, salt: &[u8], salted_password: &[u8], iterations: u32) -> Self {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// From a password (`sluice storage format --add-scram`), with a fresh random salt.
    pub fn from_password(mechanism: Mechanism, password: &str, iterations: u32) -> Self {
        let salt = random_bytes::<32>();
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salt, &salted, iterations)
    }
}

/// SASL/PLAIN against a SCRAM credential: whether `password` is the one it was made from
/// (PBKDF2 with the credential's iterations: milliseconds of CPU — run it off the shard).
pub fn verify_password(mechanism: Mechanism, credential: &ScramCredential, password: &str) -> bool {
    let salted = mechanism.salted_password(password.as_bytes(), &credential.salt, credential.iterations);
    let candidate = ScramCredential::from_salted_password(mechanism, &credential.salt, &salted, credential.iterations);
    bool::from(candidate.stored_key.ct_eq(&credential.stored_key))
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::getrandom(&mut bytes).expect("the OS random source");
    bytes
}

/// Why an exchange failed. The client only ever hears "authentication failed".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramError(pub String);

/// The server's side of one SCRAM exchange.
pub struct ServerExchange {
    mechanism: Mechanism,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal { user: String, credential: ScramCredential, nonce: String, auth_message_head: String },
    Finished,
}

impl ServerExchange {
    pub fn new(mechanism: Mechanism) -> ServerExchange {
        ServerExchange { mechanism, state: State::AwaitingClientFirst }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the next client message is the client-first one.
    pub fn awaits_client_first(&self) -> bool {
        matches!(self.state, State::AwaitingClientFirst)
    }

    /// The client-first message: the server-first message to answer with. `lookup` finds the
    /// user's credential for this mechanism; `server_nonce` is fresh (tests pass their own).
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: Option<&str>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::AwaitingClientFirst) {
            return Err(ScramError("client-first message out of order".into()));
        }
        self.state = State::Finished; // until it succeeds
        let message = text(message)?;
        // gs2-header: "n," or "y," (no channel binding), an optional "a=authzid", then ",".
        let rest = message
            .strip_prefix("n,")
            .or_else(|| message.strip_prefix("y,"))
            .ok_or_else(|| ScramError("unsupported channel binding".into()))?;
        let (authzid, bare) = rest.split_once(',').ok_or_else(|| ScramError("malformed client-first".into()))?;
        let mut attributes = bare.split(',');
        let user = attributes
            .next()
            .and_then(|a| a.strip_prefix("n="))
            .map(decode_saslname)
            .ok_or_else(|| ScramError("no user name".into()))??;
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b','))
            .ok_or_else(|| ScramError("no client nonce".into()))?;
        if let Some(id) = authzid.strip_prefix("a=") {
            if decode_saslname(id)? != user {
                return Err(ScramError("authorization id differs from the user name".into()));
            }
        } else if !authzid.is_empty() {
            return Err(ScramError("malformed gs2 header".into()));
        }
        let credential = lookup(&user).ok_or_else(|| ScramError(format!("unknown user {user:?}")))?;
        let server_nonce = match server_nonce {
            Some(n) => n.to_string(),
            None => BASE64.encode(random_bytes::<24>()),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", BASE64.encode(&credential.salt), credential.iterations);
        let auth_message_head = format!("{bare},{server_first}");
        self.state = State::AwaitingClientFinal { user, credential, nonce, auth_message_head };
        Ok(server_first.into_bytes())
    }

    /// The client-final message: the server-final message and the authenticated user.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let State::AwaitingClientFinal { user, credential, nonce, auth_message_head } =
            std::mem::replace(&mut self.state, State::Finished)
        else {
            return Err(ScramError("client-final message out of order".into()));
        };
        let message = text(message)?;
        let (without_proof, proof) = message.rsplit_once(",p=").ok_or_else(|| ScramError("no client proof".into()))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes.next().and_then(|a| a.strip_prefix("c=")).unwrap_or_default();
        if binding != "biws" && binding != "eSws" {
            return Err(ScramError("unexpected channel binding".into()));
        }
        if attributes.next().and_then(|a| a.strip_prefix("r=")) != Some(nonce.as_str()) {
            return Err(ScramError("nonce mismatch".into()));
        }
        let proof = BASE64.decode(proof).map_err(|_| ScramError("malformed client proof".into()))?;
        let auth_message = format!("{auth_message_head},{without_proof}");
        let m = self.mechanism;
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError("client proof of the wrong length".into()));
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !bool::from(m.hash(&client_key).ct_eq(&credential.stored_key)) {
            return Err(ScramError("invalid credentials".into()));
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok((format!("v={}", BASE64.encode(server_signature)).into_bytes(), user))
    }
}

fn text(message: &[u8]) -> Result<&str, ScramError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError(format!("message of {} bytes", message.len())));
    }
    std::str::from_utf8(message).map_err(|_| ScramError("message is not UTF-8".into()))
}

/// RFC 5802's saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError("malformed user name".into())),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError("empty user name".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example: user "user", password "pencil".
    #[test]
    fn rfc_7677_test_vector() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = Mechanism::Sha256.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted_password(Mechanism::Sha256, &salt, &salted, 4096);
        let mut exchange = ServerExchange::new(Mechanism::Sha256);
        let server_first = exchange
            .client_first(
                b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                |u| (u == "user").then(|| credential.clone()),
                Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"),
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(server_first).unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (server_final, user) = exchange
            .client_final(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(user, "user");
        assert!(verify_password(Mechanism::Sha256, &credential, "pencil"));
        assert!(!verify_password(Mechanism::Sha256, &credential, "pencil2"));
    }

    #[test]
    fn a_wrong_proof_an_unknown_user_and_garbage_fail() {
        let credential = ScramCredential::from_password(Mechanism::Sha512, "secret", 4096);
        let mut exchange = ServerExchange::new(Mechanism::Sha512);
        let first = exchange.client_first(b"n,,n=alice,r=abc", |_| Some(credential.clone()), Some("xyz")).unwrap();
        assert!(String::from_utf8(first).unwrap().starts_with("r=abcxyz,s="));
        let bad_proof = BASE64.encode([7u8; 64]);
        assert!(exchange.client_final(format!("c=biws,r=abcxyz,p={bad_proof}").as_bytes()).is_err());
        assert!(exchange.client_final(b"c=biws,r=abcxyz,p=AA==").is_err(), "finished after a failure");

        let mut unknown = ServerExchange::new(Mechanism::Sha512);
        assert!(unknown.client_first(b"n,,n=mallory,r=abc", |_| None, None).is_err());
        for garbage in [&b"p=tls-unique,,n=a,r=b"[..], b"", b"n,,", b"n,,n=,r=x", b"n,,n=a=b,r=x", &[0xff, 0xfe]] {
            let mut e = ServerExchange::new(Mechanism::Sha256);
            assert!(e.client_first(garbage, |_| Some(credential.clone()), None).is_err(), "{garbage:?}");
        }
    }

    #[test]
    fn saslnames_decode() {
        assert_eq!(decode_saslname("a=2Cb=3Dc").unwrap(), "a,b=c");
        assert!(decode_saslname("a=2").is_err());
    }
}
