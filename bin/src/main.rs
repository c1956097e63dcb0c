//! The `sluice` binary: `sluice broker` runs a broker node, `sluice bench` drives any
//! Kafka-compatible broker with load, `sluice tune` runs tuning sweeps (bench and tune live in
//! the `sluice-harness` crate). Owns argument parsing, process start-up and shutdown, and the
//! broker's start-up. Must never: hold broker logic itself (that lives in the engine and net
//! crates) or the harness's (that lives in `sluice-harness`).

mod broker;
mod broker_config;
mod fault_points;
mod listeners;
mod logging;
mod print_config;
mod startup;
mod topic_hot;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "A Kafka-wire-compatible streaming broker, thread-per-core on io_uring")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once at start-up; the size of the bench's many flags does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run a broker node.
    Broker(broker::BrokerArgs),
    /// Benchmark any Kafka-compatible broker: produce, consume or e2e load.
    Bench(sluice_harness::bench::BenchArgs),
    /// Run a tuning sweep (tuning/sweeps/*.toml) against brokers it starts; write results and plots.
    Tune(sluice_harness::tune::TuneArgs),
    /// Topic tools: `topic hot` (hot partitions and keys from the brokers' metrics).
    #[command(subcommand)]
    Topic(topic_hot::TopicCommand),
}

/// glibc returns freed large blocks to the kernel (and faults them back in on reuse): request
/// frames, write-behind chunks and tail-cache pieces are megabytes each, so the churn cost about
/// a fifth of broker CPU in the produce profile (page faults, zeroing). Keep them in the heap for
/// reuse; the engine's memory budgets bound how much that is.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

fn main() {
    tune_allocator();
    logging::init(); // starts the log writer thread: after tune_allocator
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Broker(args) => broker::run(args),
        Command::Bench(args) => sluice_harness::bench::run(args),
        Command::Tune(args) => sluice_harness::tune::run(args),
        Command::Topic(command) => topic_hot::run(command),
    };
    // exit() runs no destructors: write the queued log lines first.
    logging::flush();
    std::process::exit(code);
}
