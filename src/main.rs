use clap::Parser;
use tracing_subscriber::EnvFilter;

// The engine allocates many small, short-lived strings and rows; glibc's
// allocator spent a quarter of the engine benchmark's time consolidating them.
// mimalloc, through `cdcview::memory`, which also sets what it does with
// freed memory.
#[global_allocator]
static GLOBAL: cdcview::memory::Allocator = cdcview::memory::Allocator;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn")))
        .with_writer(std::io::stderr)
        .init();
    match cdcview::cli::run(cdcview::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: what went wrong, with its causes, and the fix the context names.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
