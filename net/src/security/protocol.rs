//! Kafka's security protocols (`listener.security.protocol.map` values) and what one
//! connection knows about its own security.
//!
//! Owns: the protocol enum and [`ConnectionSecurity`], the per-connection record the request
//! loop keeps. Must never: hold secrets (a principal is a name, not a credential).

use std::rc::Rc;

/// How a listener's connections are secured (Kafka's `SecurityProtocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), case-insensitive.
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        SecurityProtocol::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The connection is TLS from its first byte.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// The client must authenticate with SASL before any other request
    /// ([`super::sasl_connection`]).
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What one accepted connection knows about its security, kept in the connection's state for
/// the whole connection. SASL authentication state goes next to it.
#[derive(Clone, Debug)]
pub struct ConnectionSecurity {
    /// The listener's name (`PLAINTEXT`, `SSL`, or a named listener such as `CLIENT`):
    /// Metadata, DescribeCluster and FindCoordinator answer with this listener's endpoints.
    pub listener: Rc<str>,
    pub protocol: SecurityProtocol,
    /// `User:<mapped subject DN>` of a client that presented a certificate on a TLS listener
    /// (`ssl.client.auth` requested or required, `ssl.principal.mapping.rules` applied).
    pub tls_principal: Option<String>,
}

impl ConnectionSecurity {
    /// A PLAINTEXT connection on the listener named `listener`.
    pub fn plaintext(listener: &str) -> ConnectionSecurity {
        ConnectionSecurity { listener: Rc::from(listener), protocol: SecurityProtocol::Plaintext, tls_principal: None }
    }

    /// The principal requests are made as (before SASL): the mTLS one or `User:ANONYMOUS`.
    pub fn principal(&self) -> &str {
        self.tls_principal.as_deref().unwrap_or(ANONYMOUS)
    }
}

/// Kafka's principal for a client that did not authenticate.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_round_trip() {
        for p in SecurityProtocol::ALL {
            assert_eq!(SecurityProtocol::parse(p.name()), Some(p));
            assert_eq!(SecurityProtocol::parse(&p.name().to_ascii_lowercase()), Some(p));
        }
        assert_eq!(SecurityProtocol::parse("TLS"), None);
        assert!(SecurityProtocol::SaslSsl.uses_tls() && SecurityProtocol::SaslSsl.uses_sasl());
        assert!(!SecurityProtocol::Plaintext.uses_tls() && !SecurityProtocol::SaslPlaintext.uses_tls());
        assert_eq!(ConnectionSecurity::plaintext("PLAINTEXT").principal(), "User:ANONYMOUS");
    }
}
