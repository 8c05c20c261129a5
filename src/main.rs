use clap::Parser;
use tracing_subscriber::EnvFilter;

// The engine allocates many small, short-lived strings and rows; glibc's
// allocator spent a quarter of the engine benchmark's time consolidating them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn")))
        .with_writer(std::io::stderr)
        .init();
    cdcview::cli::run(cdcview::cli::Cli::parse()).await
}
