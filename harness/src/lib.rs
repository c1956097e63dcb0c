//! sluice's load and tuning harness: the code behind `sluice bench` and `sluice tune`.
//!
//! Owns: the Kafka-protocol load generator with its workloads, client shards, latency
//! recording, verification and reports ([`bench`]), and the tuning sweeps that start brokers
//! (the running `sluice` executable, as a child process), run `sluice bench` against them and
//! write results and plots ([`tune`]). The `sluice` binary parses the command line and calls
//! [`bench::run`] / [`tune::run`] with [`bench::BenchArgs`] / [`tune::TuneArgs`].
//!
//! Must never: link or embed the broker (it talks to brokers only over the Kafka wire protocol
//! and starts them only as processes), or be needed by the broker to run.

pub mod bench;
pub mod tune;
