//! TLS settings of the SSL and SASL_SSL listeners, with Kafka's names, and the rustls server
//! configuration built from them.
//!
//! Owns: `ssl.keystore.type` (PEM), `ssl.keystore.location` (the certificate chain and the
//! private key in one PEM file), `ssl.truststore.type` (PEM), `ssl.truststore.location` (CA
//! bundle the client certificates must chain to), `ssl.client.auth` (none | requested |
//! required), `ssl.enabled.protocols` (TLSv1.2, TLSv1.3) and `ssl.principal.mapping.rules`;
//! loading and checking the files once at start-up. Settings apply to every TLS listener (no
//! `listener.name.<name>.ssl.*` overrides yet).
//! Must never: start a TLS listener from a file it could not read or a key that does not match
//! its certificate (start-up fails naming the key instead); accept a keystore type or protocol it
//! would ignore.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::principal::PrincipalMapper;

/// `ssl.client.auth`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    #[default]
    None,
    /// A certificate is asked for; a client without one connects as `User:ANONYMOUS`.
    Requested,
    Required,
}

/// The `ssl.*` settings as given.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    pub keystore_location: Option<PathBuf>,
    pub truststore_location: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`; `None`: TLSv1.2 and TLSv1.3 (Kafka's default).
    pub enabled_protocols: Option<Vec<&'static rustls::SupportedProtocolVersion>>,
    pub principal_mapping_rules: Option<String>,
}

/// What a TLS listener needs at run time (shared by every shard).
#[derive(Clone, Debug)]
pub struct TlsAcceptor {
    pub config: Arc<rustls::ServerConfig>,
    pub principal_mapper: Arc<PrincipalMapper>,
}

impl TlsSettings {
    /// Takes one key if it is a TLS setting (`Ok(false)` otherwise); a value this build cannot
    /// honour is an error naming the key.
    pub fn accept(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let value = value.trim();
        match key {
            "ssl.keystore.type" | "ssl.truststore.type" => {
                if !value.eq_ignore_ascii_case("PEM") {
                    return Err(format!("{key}: only PEM is supported, got {value:?}"));
                }
            }
            "ssl.keystore.location" => self.keystore_location = Some(PathBuf::from(value)),
            "ssl.truststore.location" => self.truststore_location = Some(PathBuf::from(value)),
            "ssl.client.auth" => {
                self.client_auth = match value.to_ascii_lowercase().as_str() {
                    "none" => ClientAuth::None,
                    "requested" => ClientAuth::Requested,
                    "required" => ClientAuth::Required,
                    _ => return Err(format!("{key}: expected none, requested or required, got {value:?}")),
                }
            }
            "ssl.enabled.protocols" => {
                let mut versions = Vec::new();
                for name in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    versions.push(match name {
                        "TLSv1.3" => &rustls::version::TLS13,
                        "TLSv1.2" => &rustls::version::TLS12,
                        other => return Err(format!("{key}: {other:?} is not supported (TLSv1.2, TLSv1.3)")),
                    });
                }
                if versions.is_empty() {
                    return Err(format!("{key}: no protocol given"));
                }
                self.enabled_protocols = Some(versions);
            }
            "ssl.principal.mapping.rules" => {
                PrincipalMapper::parse(value).map_err(|e| format!("{key}: {e}"))?;
                self.principal_mapping_rules = Some(value.to_string());
            }
            "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {
                return Err(format!("{key}: encrypted PEM keys are not supported; give an unencrypted key"))
            }
            // A client-side setting (host name checks when this broker connects out); brokers
            // reach each other over PLAINTEXT for now.
            "ssl.endpoint.identification.algorithm" => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Loads the files and builds the acceptor. `listener` names the TLS listener that needs it
    /// (for the error when no keystore is given).
    pub fn build(&self, listener: &str) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let keystore = self
            .keystore_location
            .as_ref()
            .ok_or_else(|| format!("ssl.keystore.location: required by the TLS listener {listener}"))?;
        let (certs, key) = load_keystore(keystore)?;
        let verifier = match self.client_auth {
            ClientAuth::None => WebPkiClientVerifier::no_client_auth(),
            auth => {
                let path = self.truststore_location.as_ref().ok_or_else(|| {
                    "ssl.truststore.location: required with ssl.client.auth=requested or required".to_string()
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in load_certs("ssl.truststore.location", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("ssl.truststore.location: {}: bad CA certificate: {e}", path.display()))?;
                }
                let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if auth == ClientAuth::Requested { builder.allow_unauthenticated() } else { builder };
                builder.build().map_err(|e| format!("ssl.truststore.location: {e}"))?
            }
        };
        let versions =
            self.enabled_protocols.clone().unwrap_or_else(|| vec![&rustls::version::TLS13, &rustls::version::TLS12]);
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| format!("ssl.enabled.protocols: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| format!("ssl.keystore.location: {}: {e}", keystore.display()))?;
        let principal_mapper = match &self.principal_mapping_rules {
            Some(rules) => PrincipalMapper::parse(rules).map_err(|e| format!("ssl.principal.mapping.rules: {e}"))?,
            None => PrincipalMapper::default(),
        };
        Ok(TlsAcceptor { config: Arc::new(config), principal_mapper: Arc::new(principal_mapper) })
    }
}

/// A client configuration trusting the CAs in `ca_pem` (`sluice bench --ssl-ca`).
pub fn client_config(ca_pem: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs("CA file", &ca_pem.to_path_buf())? {
        roots.add(cert).map_err(|e| format!("{}: bad CA certificate: {e}", ca_pem.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn load_certs(key: &str, path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: {} holds no CERTIFICATE", path.display()));
    }
    Ok(certs)
}

fn load_keystore(path: &PathBuf) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    const KEY: &str = "ssl.keystore.location";
    let certs = load_certs(KEY, path)?;
    let key = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{KEY}: {}: no usable PRIVATE KEY: {e}", path.display()))?;
    Ok((certs, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_values_are_parsed_and_unsupported_ones_refused() {
        let mut s = TlsSettings::default();
        assert!(s.accept("ssl.keystore.type", "PEM").unwrap());
        assert!(s.accept("ssl.client.auth", "required").unwrap());
        assert_eq!(s.client_auth, ClientAuth::Required);
        assert!(s.accept("ssl.enabled.protocols", "TLSv1.3").unwrap());
        assert_eq!(s.enabled_protocols.as_ref().unwrap().len(), 1);
        assert!(!s.accept("log.retention.ms", "1").unwrap());
        for (key, value) in [
            ("ssl.keystore.type", "JKS"),
            ("ssl.client.auth", "maybe"),
            ("ssl.enabled.protocols", "TLSv1.1"),
            ("ssl.principal.mapping.rules", "RULE:x"),
            ("ssl.key.password", "secret"),
        ] {
            assert!(s.accept(key, value).is_err(), "{key}={value} must be refused");
        }
    }

    #[test]
    fn a_missing_keystore_names_the_key() {
        let missing = TlsSettings::default().build("SSL").unwrap_err();
        assert!(missing.starts_with("ssl.keystore.location"), "{missing}");
        let s = TlsSettings { keystore_location: Some("/nonexistent/k.pem".into()), ..Default::default() };
        let unreadable = s.build("SSL").unwrap_err();
        assert!(
            unreadable.starts_with("ssl.keystore.location") && unreadable.contains("/nonexistent/k.pem"),
            "{unreadable}"
        );
    }
}
