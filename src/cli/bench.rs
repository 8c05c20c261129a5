//! `cdcview bench engine`: the engine alone on a generated workload.

use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{IncrementalView, OrderDetailsView};
use crate::workload::{Sizes, Workload};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Build a generated state, then apply a mixed stream of changes; print
    /// changes per second, batch latency percentiles and peak memory.
    Engine(EngineArgs),
    /// Insert orders into MySQL one at a time and time how long each takes to
    /// show in the API (polling GET /order_details_mv/{id} every millisecond).
    Freshness(FreshnessArgs),
}

#[derive(Args, Debug)]
pub struct FreshnessArgs {
    #[arg(long, env = "CDCVIEW_MYSQL_URL", default_value = "mysql://cdcview:cdcview@127.0.0.1:3307/shop")]
    pub mysql_url: String,
    #[arg(long, env = "CDCVIEW_API", default_value = "http://127.0.0.1:8001")]
    pub api: String,
    /// Orders to insert.
    #[arg(long, default_value_t = 200)]
    pub count: usize,
    /// Inserts per second.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
}

#[derive(Args, Debug)]
pub struct EngineArgs {
    #[arg(long, default_value_t = 100_000)]
    pub users: i64,
    #[arg(long, default_value_t = 200_000)]
    pub orders: i64,
    #[arg(long, default_value_t = 500_000)]
    pub items: i64,
    #[arg(long, default_value_t = 200_000)]
    pub events: i64,
    /// Changes in the measured stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub changes: usize,
    /// Changes per batch (one view version each).
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Engine(args) => tokio::task::spawn_blocking(move || engine(args)).await?,
        BenchCommand::Freshness(args) => freshness(args).await,
    }
}

async fn freshness(args: FreshnessArgs) -> anyhow::Result<()> {
    use mysql_async::prelude::*;
    let pool = crate::api::mysql_pool(&args.mysql_url)?;
    let mut conn = pool.get_conn().await?;
    let user: u64 = conn.query_first("SELECT MIN(user_id) FROM users").await?.ok_or_else(|| anyhow::anyhow!("no users: run cdcview seed"))?;
    let http = reqwest::Client::new();
    let interval = std::time::Duration::from_secs_f64(1.0 / args.rate);
    let mut lags = Vec::with_capacity(args.count);
    let bar = ProgressBar::new(args.count as u64);
    for _ in 0..args.count {
        let next = Instant::now() + interval;
        conn.exec_drop("INSERT INTO orders (user_id, total, order_status) VALUES (?, '1.00', 'Created')", (user,)).await?;
        let committed = Instant::now();
        let id = conn.last_insert_id().ok_or_else(|| anyhow::anyhow!("no order id"))?;
        let url = format!("{}/order_details_mv/{id}", args.api);
        loop {
            if http.get(&url).send().await?.status().is_success() {
                break;
            }
            anyhow::ensure!(committed.elapsed().as_secs() < 30, "order {id} did not show within 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        lags.push(committed.elapsed());
        bar.inc(1);
        tokio::time::sleep_until(next.into()).await;
    }
    bar.finish_and_clear();
    lags.sort_unstable();
    let pct = |p| percentile(&lags, p);
    println!("freshness over {} inserts at {}/s (commit -> visible in GET /order_details_mv/{{id}}, polled every 1 ms):", args.count, args.rate);
    println!("p50 {:?}, p99 {:?}, max {:?}", pct(0.5), pct(0.99), lags.last().unwrap());
    drop(conn);
    pool.disconnect().await?;
    Ok(())
}

fn engine(args: EngineArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0 && args.users > 0 && args.orders > 0 && args.items > 0, "sizes and --batch must be positive");
    let sizes = Sizes { users: args.users, orders: args.orders, items: args.items, events: args.events };
    let mut workload = Workload::new(sizes, args.seed);
    let mut engine = OrderDetailsView::new();

    eprintln!("building the initial state: {sizes:?}");
    let initial = workload.initial();
    let n_initial = initial.len();
    let t = Instant::now();
    // Move the changes into the engine batch by batch: no copy of the state.
    let mut initial = initial.into_iter();
    loop {
        let batch: Vec<_> = initial.by_ref().take(10_000).collect();
        if batch.is_empty() {
            break;
        }
        engine.apply_batch(batch);
    }
    drop(initial);
    let build = t.elapsed();
    eprintln!("initial state: {n_initial} changes in {:.2} s ({:.0}/s), {} view rows", build.as_secs_f64(), n_initial as f64 / build.as_secs_f64(), engine.len());

    // Generate the stream up front, so that only the engine is timed.
    let stream: Vec<Vec<_>> = (0..args.changes.div_ceil(args.batch))
        .map(|b| (0..args.batch.min(args.changes - b * args.batch)).map(|_| workload.next_change()).collect())
        .collect();
    let bar = ProgressBar::new(stream.len() as u64).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} batches")?);
    let mut latencies = Vec::with_capacity(stream.len());
    let mut deltas = 0usize;
    let start = Instant::now();
    for batch in stream {
        let t = Instant::now();
        deltas += engine.apply_batch(batch).len();
        latencies.push(t.elapsed());
        bar.inc(1);
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    latencies.sort_unstable();
    let pct = |p| percentile(&latencies, p);
    println!("engine: {} changes in {:.3} s = {:.0} changes/s (one core)", args.changes, elapsed.as_secs_f64(), args.changes as f64 / elapsed.as_secs_f64());
    println!("batches of {}: p50 {:?}, p99 {:?}, max {:?}", args.batch, pct(0.50), pct(0.99), latencies.last().unwrap());
    println!("view deltas emitted: {deltas}; view rows: {}", engine.len());
    println!("peak resident memory: {}", peak_rss().map_or("unknown".into(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0)));
    Ok(())
}

/// The value at fraction `p` of a sorted, non-empty slice.
fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// VmHWM from /proc/self/status, in KiB.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
