//! Transport security: listeners' security protocols, TLS (rustls) and the mTLS principal.
//! SASL and ACLs build on [`protocol::ConnectionSecurity`].

pub mod principal;
pub mod protocol;
pub mod tls_config;
pub mod tls_stream;
pub mod transport;
