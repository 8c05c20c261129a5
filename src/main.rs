use clap::Parser;
use tracing_subscriber::EnvFilter;

// The engine allocates many small, short-lived strings and rows; glibc's
// allocator spent a quarter of the engine benchmark's time consolidating them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (numbered in its `mimalloc.h`; the
/// bindings name no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps the memory that freed rows leave instead of handing it back to the
/// OS 10 ms later, mimalloc's default: the view replaces rows all the time,
/// so pages handed back were soon faulted in and zeroed again, and under
/// load that cost the engine a tenth of its throughput. Resident memory
/// stays at its peak. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets an option by its number; no pointer is involved.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    keep_freed_memory();
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
