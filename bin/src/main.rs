//! The `sluice` binary: `sluice broker` runs a broker node, `sluice bench` drives any
//! Kafka-compatible broker with load, `sluice tune` runs tuning sweeps (bench and tune live in
//! the `sluice-harness` crate), and the admin CLI (`topic`, `produce`, `consume`, `group`,
//! `cluster`, `configs`) lives in the `sluice-admin` crate. Owns argument parsing, process
//! start-up and shutdown, and the broker's start-up. Must never: hold broker logic itself (that
//! lives in the engine and net crates), the harness's (`sluice-harness`) or the admin CLI's
//! (`sluice-admin`).

mod broker;
mod broker_config;
mod fault_points;
mod listeners;
mod logging;
mod print_config;
mod startup;
mod storage_format;

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
    /// Prepare a data directory (Kafka's kafka-storage.sh): the first SCRAM users.
    Storage {
        #[command(subcommand)]
        command: storage_format::StorageCommand,
    },
    /// Run a tuning sweep (tuning/sweeps/*.toml) against brokers it starts; write results and plots.
    Tune(sluice_harness::tune::TuneArgs),
    /// Create, list, describe, alter and delete topics (like kafka-topics).
    Topic(sluice_admin::topic::TopicArgs),
    /// Console producer: stdin lines or a file to a topic (like kafka-console-producer).
    Produce(sluice_admin::console_produce::ProduceArgs),
    /// Console consumer: print a topic's records (like kafka-console-consumer / kcat).
    Consume(sluice_admin::console_consume::ConsumeArgs),
    /// List, describe (lag), delete consumer groups and reset their offsets (like kafka-consumer-groups).
    Group(sluice_admin::group::GroupArgs),
    /// Show the cluster: id, controller, nodes, supported API versions.
    Cluster(sluice_admin::cluster::ClusterArgs),
    /// Describe or alter topic and broker configs (like kafka-configs).
    Configs(sluice_admin::configs::ConfigsArgs),
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

/// Runs an admin CLI command: its exit code (0 ok, 1 a Kafka error, 2 usage), its error on stderr.
fn admin(command: impl FnOnce() -> sluice_admin::CliResult<()>) -> i32 {
    sluice_admin::restore_sigpipe();
    sluice_admin::exit_code(command())
}

fn main() {
    tune_allocator();
    logging::init(); // starts the log writer thread: after tune_allocator
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Broker(args) => broker::run(args),
        Command::Bench(args) => sluice_harness::bench::run(args),
        Command::Tune(args) => sluice_harness::tune::run(args),
        Command::Storage { command } => storage_format::run(command),
        Command::Topic(args) => admin(|| sluice_admin::topic::run(args)),
        Command::Produce(args) => admin(|| sluice_admin::console_produce::run(args)),
        Command::Consume(args) => admin(|| sluice_admin::console_consume::run(args)),
        Command::Group(args) => admin(|| sluice_admin::group::run(args)),
        Command::Cluster(args) => admin(|| sluice_admin::cluster::run(args)),
        Command::Configs(args) => admin(|| sluice_admin::configs::run(args)),
    };
    // exit() runs no destructors: write the queued log lines first.
    logging::flush();
    std::process::exit(code);
}
