//! The command line: one binary, one subcommand per tool.

mod bench;
pub(crate) mod explain;
mod push_events;
mod seed;
mod serve;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cdcview", version, about = "CDC-driven materialized views: Debezium topics in, an exact order_details view out")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Consume the topics, maintain order_details_mv, serve it over HTTP and write it to PostgreSQL.
    Serve(Box<crate::config::ServeConfig>),
    /// Insert realistic fake users, addresses, orders and items into MySQL.
    Seed(seed::SeedArgs),
    /// Produce order status events to Kafka, like the reference push_events.js.
    PushEvents(push_events::PushArgs),
    /// Load view declarations (SQL) and print the plan each compiles to.
    Explain(explain::ExplainArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(cfg) => serve::run(*cfg).await,
        Command::Seed(args) => seed::run(args).await,
        Command::PushEvents(args) => push_events::run(args).await,
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Explain(args) => explain::run(args),
    }
}
