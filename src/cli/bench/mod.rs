//! `cdcview bench`: the engine alone on a generated workload (`engine`),
//! commit-to-visible latency (`freshness`) and reads at fixed rates (`reads`).

use std::time::Instant;

use clap::{Args, Subcommand};

mod cpu;
mod freshness;
mod reads;
mod stages;
use indicatif::{ProgressBar, ProgressStyle};

use crate::engine::{IncrementalView, OrderDetailsView};
use crate::workload::{Mix, Sizes, SteadyKind, Workload};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Build a generated state, then apply a mixed stream of changes; print
    /// changes per second, batch latency percentiles and peak memory.
    Engine(EngineArgs),
    /// Insert orders into MySQL at a steady rate and time how long each
    /// takes, from its commit, to arrive on the API's change stream (SSE).
    Freshness(FreshnessArgs),
    /// Read order_details_mv at fixed request rates (open loop, as wrk2) and
    /// print latency percentiles per rate, beside the server's own p99.
    Reads(reads::ReadsArgs),
}

#[derive(Args, Debug)]
pub struct FreshnessArgs {
    #[arg(long, env = "CDCVIEW_MYSQL_URL", default_value = "mysql://cdcview:cdcview@127.0.0.1:3307/shop")]
    pub mysql_url: String,
    #[arg(long, env = "CDCVIEW_API", default_value = "http://127.0.0.1:8001")]
    pub api: String,
    /// Kafka, read alongside cdcview to time Debezium's part of each order's trip.
    #[arg(long, env = "CDCVIEW_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of the Debezium topics (the orders are read from PREFIX.orders).
    #[arg(long, env = "CDCVIEW_TOPIC_PREFIX", default_value = "mysql.shop")]
    pub topic_prefix: String,
    /// Transactions (one order insert each) per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// How long to keep the rate up, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub duration: f64,
    /// MySQL connections writing in parallel (one commit at a time each).
    #[arg(long, default_value_t = 8)]
    pub writers: usize,
    /// Write `seconds_since_start,latency_ms` per order to this CSV file.
    #[arg(long)]
    pub csv: Option<std::path::PathBuf>,
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
    /// Which stream follows the initial state (see `Mix`): `steady` (updates on
    /// uniform keys, short text) or `churn` (inserts and deletes of every
    /// table, Zipf-skewed keys, realistic text, a share of no-ops).
    #[arg(long, value_enum, default_value_t = Mix::Steady)]
    pub mix: Mix,
    /// The steady mix's changes of this kind alone, after the same initial
    /// state: what one kind of change costs.
    #[arg(long, value_enum)]
    pub only: Option<SteadyKind>,
    /// Which engine maintains the view: the hand-written one (`hand`), or
    /// the SQL engine running order_details_mv as --views declares it (`sql`).
    #[arg(long, value_enum, default_value_t = EngineKind::Hand)]
    pub engine: EngineKind,
    /// The declarations the SQL engine runs (`--engine sql`): .sql files
    /// or folders, comma-separated.
    #[arg(long, default_value = "views/shop.sql", value_delimiter = ',')]
    pub views: Vec<std::path::PathBuf>,
    /// The materialized views the SQL engine maintains (all of --views when
    /// absent), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub view: Vec<String>,
    /// Afterwards, save a state snapshot into this folder and time saving it
    /// and restoring a view from it (what a restart of `cdcview serve` does).
    #[arg(long)]
    pub snapshot_dir: Option<std::path::PathBuf>,
    /// Leave the snapshot in --snapshot-dir, covering no topic offsets, so
    /// that `cdcview serve --state-dir DIR` starts from this state (scripts/
    /// bench.sh times a serve start with 1M orders that way).
    #[arg(long, requires = "snapshot_dir")]
    pub keep_snapshot: bool,
    /// Also measure what the engine's state alone holds in memory (the
    /// peak counts the benchmark's own buffers too): freed pages go back to
    /// the OS at once for the whole run, which makes it slower, and at the
    /// end resident memory with the engine is compared with resident memory
    /// once it is dropped. (Not with --snapshot-dir, whose restore hands
    /// pages back after a delay.)
    #[arg(long, conflicts_with = "snapshot_dir")]
    pub state_memory: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    Hand,
    Sql,
}

/// What the benchmark drives: a batch of changes in, the number of view
/// rows that changed out.
trait BenchEngine {
    fn apply(&mut self, batch: Vec<crate::change::Change>) -> usize;
    fn rows(&self) -> usize;
}

impl BenchEngine for OrderDetailsView {
    fn apply(&mut self, batch: Vec<crate::change::Change>) -> usize {
        self.apply_batch(batch).len()
    }
    fn rows(&self) -> usize {
        self.len()
    }
}

/// order_details_mv as views/shop.sql declares it, run by the SQL engine.
struct SqlShop {
    flow: cdcview_engine::Dataflow,
    sources: crate::engine::shop_rows::ShopSources,
}

impl SqlShop {
    fn load(paths: &[std::path::PathBuf], only: &[String]) -> anyhow::Result<Self> {
        use anyhow::Context;
        let mut catalog = cdcview_sql::Catalog::new();
        for path in crate::views::sql_files(paths)? {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            catalog.load(&text).map_err(|e| anyhow::anyhow!("{}", crate::views::located(&path, &text, &e)))?;
        }
        for name in only {
            anyhow::ensure!(catalog.get(name).is_some_and(|r| r.is_materialized()), "no materialized view {name} in the --views files");
        }
        let flow = cdcview_engine::Dataflow::with_views(&catalog.specs(), (!only.is_empty()).then_some(only));
        let sources = crate::engine::shop_rows::ShopSources::of(&flow).ok_or_else(|| {
            anyhow::anyhow!("the --views files do not declare the shop's sources (users, addresses, orders, order_items, order_updates)")
        })?;
        anyhow::ensure!(!flow.views().is_empty(), "the --views files declare no materialized view");
        let names: Vec<&str> = flow.views().iter().map(|v| v.name.as_str()).collect();
        eprintln!("SQL engine maintaining {}", names.join(", "));
        Ok(SqlShop { flow, sources })
    }
}

impl BenchEngine for SqlShop {
    fn apply(&mut self, batch: Vec<crate::change::Change>) -> usize {
        let mut changes = Vec::with_capacity(batch.len() + batch.len() / 4);
        for change in batch {
            self.sources.changes(change, &mut changes);
        }
        self.flow.apply(changes).iter().map(Vec::len).sum()
    }
    fn rows(&self) -> usize {
        self.flow.views().iter().map(|v| v.len()).sum()
    }
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Engine(args) => tokio::task::spawn_blocking(move || engine(args)).await?,
        BenchCommand::Freshness(args) => freshness::run(args).await,
        BenchCommand::Reads(args) => reads::run(args).await,
    }
}

fn engine(args: EngineArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch > 0 && args.users > 0 && args.orders > 0 && args.items > 0, "sizes and --batch must be positive");
    match args.engine {
        EngineKind::Hand => {
            let mut engine = OrderDetailsView::new();
            drive(&args, &mut engine)?;
            let held = resident_state(engine, |engine| match &args.snapshot_dir {
                // As `serve` restores a snapshot.
                Some(dir) => {
                    crate::memory::hand_back_freed();
                    time_snapshot(dir, engine, args.keep_snapshot)
                }
                None => Ok(()),
            })?;
            print_memory(held, args.state_memory);
        }
        EngineKind::Sql => {
            anyhow::ensure!(args.snapshot_dir.is_none(), "--snapshot-dir is for the hand-written engine");
            let mut engine = SqlShop::load(&args.views, &args.view)?;
            drive(&args, &mut engine)?;
            print_memory(resident_state(engine, |_| Ok(()))?, args.state_memory);
        }
    }
    Ok(())
}

/// Prints the process's peak and, with `--state-memory`, what the engine's
/// state alone holds (see [`resident_state`]).
fn print_memory(state_kib: Option<u64>, state_memory: bool) {
    let mib = |kib: Option<u64>| kib.map_or("unknown".into(), |kib| format!("{:.0} MiB", kib as f64 / 1024.0));
    println!("peak resident memory: {}", mib(status_kib("VmHWM")));
    // The peak also counts the benchmark's own buffers (its generated
    // changes, its copy of every table's rows), the same for both engines,
    // which makes the engines' ratio look closer than their states are.
    if state_memory {
        println!("engine state: {} resident (given back when the engine is dropped)", mib(state_kib));
    }
}

/// What the engine's state holds in memory: resident memory with the engine
/// alive, less resident memory once it is dropped, free pages handed back
/// to the OS before each reading (the benchmark's buffers are freed by
/// then). Only meaningful where freed pages go back at once
/// (`--state-memory`): pages kept for reuse stay resident either way.
/// `then` runs with the engine before it is dropped.
fn resident_state<E>(engine: E, then: impl FnOnce(&E) -> anyhow::Result<()>) -> anyhow::Result<Option<u64>> {
    crate::memory::release_freed_now();
    let with = status_kib("VmRSS");
    then(&engine)?;
    drop(engine);
    crate::memory::release_freed_now();
    let without = status_kib("VmRSS");
    Ok(with.zip(without).map(|(with, without)| with.saturating_sub(without)))
}

/// Builds the initial state, then times the measured stream.
fn drive(args: &EngineArgs, engine: &mut dyn BenchEngine) -> anyhow::Result<()> {
    let sizes = Sizes { users: args.users, orders: args.orders, items: args.items, events: args.events };
    anyhow::ensure!(args.only.is_none() || args.mix == Mix::Steady, "--only picks changes of the steady mix; drop --mix churn");
    let mut workload = Workload::with_mix(sizes, args.seed, args.mix).only(args.only);
    match args.state_memory {
        // Kept pages would stay resident with or without the engine.
        true => crate::memory::hand_back_at_once(),
        // As `serve` runs its view (see `crate::memory`).
        false => crate::memory::keep_freed(),
    }

    let only = args.only.map(|kind| format!(" ({kind:?} changes only)")).unwrap_or_default();
    eprintln!("building the initial state: {sizes:?}, then the {:?} mix{only}, {:?} engine", args.mix, args.engine);
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
        engine.apply(batch);
    }
    drop(initial);
    let build = t.elapsed();
    eprintln!(
        "initial state: {n_initial} changes in {:.2} s ({:.0}/s), {} view rows",
        build.as_secs_f64(),
        n_initial as f64 / build.as_secs_f64(),
        engine.rows()
    );

    // Generate the stream up front, so that only the engine is timed.
    let stream: Vec<Vec<_>> = (0..args.changes.div_ceil(args.batch))
        .map(|b| (0..args.batch.min(args.changes - b * args.batch)).map(|_| workload.next_change()).collect())
        .collect();
    let bar = ProgressBar::new(stream.len() as u64).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} batches")?);
    let mut latencies = Vec::with_capacity(stream.len());
    let mut deltas = 0usize;
    let clock = cpu::CpuClock::now();
    for batch in stream {
        let t = Instant::now();
        deltas += engine.apply(batch);
        latencies.push(t.elapsed());
        bar.inc(1);
    }
    let spent = clock.elapsed();
    let elapsed = spent.wall;
    bar.finish_and_clear();
    latencies.sort_unstable();
    if !latencies.is_empty() {
        let pct = |p| percentile(&latencies, p);
        println!(
            "engine: {} changes in {:.3} s = {:.0} changes/s (one core)",
            args.changes,
            elapsed.as_secs_f64(),
            args.changes as f64 / elapsed.as_secs_f64()
        );
        println!("batches of {}: p50 {:?}, p99 {:?}, max {:?}", args.batch, pct(0.50), pct(0.99), latencies.last().unwrap());
        print_cpu_share(args.changes, &spent);
    }
    println!("view deltas emitted: {deltas}; view rows: {}", engine.rows());
    Ok(())
}

/// Throughput per second the thread really had a CPU, and where the rest of
/// the wall time went: on a shared host the wall-clock figure moves with
/// the neighbours, this one far less.
fn print_cpu_share(changes: usize, spent: &cpu::CpuSpent) {
    let Some(on_cpu) = spent.on_cpu else { return };
    let secs = |d: Option<std::time::Duration>| d.map_or("unknown".to_string(), |d| format!("{:.3} s", d.as_secs_f64()));
    println!(
        "on a CPU {:.3} s = {:.0} changes per CPU-second; waiting for a CPU {}, stolen by the host {} (all CPUs)",
        on_cpu.as_secs_f64(),
        changes as f64 / on_cpu.as_secs_f64(),
        secs(spent.waiting),
        secs(spent.steal)
    );
}

/// Saves a snapshot of `engine`, restores a view from it, and checks that the
/// restored view has the same rows; prints the times.
fn time_snapshot(dir: &std::path::Path, engine: &OrderDetailsView, keep: bool) -> anyhow::Result<()> {
    use crate::pipeline::Snapshots;
    let snapshots = Snapshots::new(dir.to_path_buf())?;
    let t = Instant::now();
    let bytes = snapshots.save(&Default::default(), engine, None)?;
    let saved = t.elapsed();
    let t = Instant::now();
    let (_, state, _) = snapshots.load()?.ok_or_else(|| anyhow::anyhow!("the snapshot just saved is missing"))?;
    let loaded = t.elapsed();
    let (restored, _) = OrderDetailsView::restore(state);
    let restored_in = t.elapsed();
    anyhow::ensure!(restored.len() == engine.len(), "restored {} rows, expected {}", restored.len(), engine.len());
    println!(
        "snapshot: {:.0} MiB saved in {:.2} s; restore {:.2} s ({:.2} s reading and decoding, then recomputing {} rows)",
        bytes as f64 / 1048576.0,
        saved.as_secs_f64(),
        restored_in.as_secs_f64(),
        loaded.as_secs_f64(),
        restored.len()
    );
    // The same snapshot written by a child process, as `serve` does: the
    // pipeline stops only for the fork.
    let t = Instant::now();
    let writer = snapshots.save_in_background(&Default::default(), engine, None).ok_or_else(|| anyhow::anyhow!("cannot fork a snapshot writer"))?;
    let paused = t.elapsed();
    writer.finished(true).ok_or_else(|| anyhow::anyhow!("the writer did not finish"))?.map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "snapshot in the background (as serve writes it): the pipeline paused {:.1} ms to fork; written in {:.2} s",
        paused.as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64()
    );
    if !keep {
        snapshots.discard()?;
    }
    Ok(())
}

/// The value at fraction `p` of a sorted, non-empty slice.
pub(crate) fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// A field of /proc/self/status in KiB (`VmHWM`: peak resident, `VmRSS`:
/// resident now).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
