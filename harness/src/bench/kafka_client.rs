//! The Kafka-protocol client connection lives in `sluice_net::kafka_client` (followers fetch
//! from their leaders with it too); re-exported here for the bench's modules.

pub use sluice_net::kafka_client::*;
