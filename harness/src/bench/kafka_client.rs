//! The Kafka-protocol client connection lives in `sluice_net::kafka_client` (followers fetch
//! from their leaders with it too); re-exported here for the bench's modules, with the bench's
//! one transport choice: [`connect`] uses TLS when `--security-protocol ssl` set it up.

use std::sync::{Arc, OnceLock};

pub use sluice_net::kafka_client::*;

/// The bench's TLS client configuration (`--security-protocol ssl`), set once before it runs.
static CLIENT_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Makes every bench connection TLS with `config`. Once per process.
pub fn use_tls(config: Arc<rustls::ClientConfig>) {
    let _ = CLIENT_TLS.set(config);
}

/// Connects (over TLS if [`use_tls`] was called) and negotiates versions.
pub async fn connect(addr: &str, client_id: &str) -> Result<KafkaConnection, String> {
    KafkaConnection::connect_with(addr, client_id, CLIENT_TLS.get()).await
}
