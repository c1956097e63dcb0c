//! Kafka protocol server. Placeholder until the protocol-server issue lands: owns nothing yet.
