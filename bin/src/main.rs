//! The `sluice` binary: `sluice broker` runs the broker; later issues add `bench` and admin
//! subcommands. Owns argument parsing, process start-up and shutdown. Must never: hold broker
//! logic itself (that lives in the engine and net crates).

mod broker;
mod broker_config;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "A Kafka-wire-compatible streaming broker, thread-per-core on io_uring")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a broker node.
    Broker(broker::BrokerArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Broker(args) => broker::run(args),
    };
    std::process::exit(code);
}
