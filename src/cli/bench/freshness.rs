//! `cdcview bench freshness`: commit-to-visible latency at a steady rate of
//! MySQL transactions, observed on the API's change stream.

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use mysql_async::prelude::*;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::stages::{self, OrderTimes, OrdersWatch};
use super::{percentile, FreshnessArgs};

/// How long to wait, after the last commit, for the last change to arrive.
const DRAIN: Duration = Duration::from_secs(10);

pub async fn run(args: FreshnessArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0 && args.duration > 0.0 && args.writers > 0, "--rate, --duration and --writers must be positive");
    let pool = crate::api::mysql_pool(&args.mysql_url)?;
    let user: u64 = {
        let mut conn = pool.get_conn().await.context("connecting to MySQL (is the stack up? ./start.sh)")?;
        conn.query_first("SELECT MIN(user_id) FROM users").await?.context("no users: run cdcview seed")?
    };
    // Subscribe before the first insert, so that no event can be missed.
    let url = format!("{}/order_details_mv/changes", args.api);
    let stream = reqwest::get(&url).await.with_context(|| format!("opening {url}"))?.error_for_status()?;
    let (seen_tx, seen_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(read_inserts(stream, seen_tx));
    let stages_before = stages::read_stages(&args.api).await?;
    let orders_topic = format!("{}.orders", args.topic_prefix);
    let watch = OrdersWatch::start(&args.brokers, &orders_topic)?;

    let total = (args.rate * args.duration).round() as u64;
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} commits, {per_sec}")?);
    let start = Instant::now();
    let start_us = crate::pipeline::now_micros() as i64;
    let commits = write_orders(&pool, user, &args, total, start, &bar).await?;
    let writing = start.elapsed();
    bar.finish_and_clear();
    let seen = collect_arrivals(seen_rx, &commits).await;
    reader.abort();
    let stages_after = stages::read_stages(&args.api).await?;
    let upstream = tokio::task::spawn_blocking(move || watch.finish()).await?;
    let wall_us = |at: Instant| start_us + at.saturating_duration_since(start).as_micros() as i64;
    let order_times: Vec<OrderTimes> = commits
        .iter()
        .filter_map(|(id, committed)| {
            let arrived = seen.get(id)?;
            Some(OrderTimes { commit_us: wall_us(*committed), upstream: upstream.get(id).copied(), event_us: wall_us(*arrived) })
        })
        .collect();

    let mut samples: Vec<(Duration, Duration)> = Vec::with_capacity(commits.len());
    let mut missing = 0;
    for (id, committed) in &commits {
        match seen.get(id) {
            Some(arrived) => samples.push((committed.duration_since(start), arrived.saturating_duration_since(*committed))),
            None => missing += 1,
        }
    }
    anyhow::ensure!(missing == 0, "{missing} of {} orders never arrived on {url} within {DRAIN:?} of the last commit", commits.len());
    samples.sort_unstable_by_key(|(at, _)| *at);
    if let Some(path) = &args.csv {
        write_csv(path, &samples).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut lags: Vec<Duration> = samples.iter().map(|(_, lag)| *lag).collect();
    lags.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "freshness: {} transactions in {:.1} s ({:.0} tx/s, asked {}), commit -> insert event on GET /order_details_mv/changes",
        commits.len(),
        writing.as_secs_f64(),
        commits.len() as f64 / writing.as_secs_f64(),
        args.rate
    );
    println!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&lags, 0.50)),
        ms(percentile(&lags, 0.99)),
        ms(*lags.last().context("no samples")?)
    );
    print!("{}", stages::table(&order_times, &stages_before, &stages_after));
    drop(pool);
    Ok(())
}

/// Inserts `total` orders at `args.rate` from `args.writers` connections;
/// returns each order's id and the moment its commit returned.
async fn write_orders(
    pool: &mysql_async::Pool,
    user: u64,
    args: &FreshnessArgs,
    total: u64,
    start: Instant,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<(i64, Instant)>> {
    let writers = args.writers as u64;
    let interval = Duration::from_secs_f64(writers as f64 / args.rate);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (pool, bar) = (pool.clone(), bar.clone());
        let count = total / writers + u64::from(w < total % writers);
        // Writers take turns, so the commits are spread evenly over time.
        let first = start + interval.mul_f64(w as f64 / writers as f64);
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.get_conn().await?;
            let mut ticker = tokio::time::interval_at(first.into(), interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut commits = Vec::with_capacity(count as usize);
            for _ in 0..count {
                ticker.tick().await;
                conn.exec_drop("INSERT INTO orders (user_id, total, order_status) VALUES (?, '1.00', 'Created')", (user,)).await?;
                commits.push((conn.last_insert_id().context("no insert id")? as i64, Instant::now()));
                bar.inc(1);
            }
            anyhow::Ok(commits)
        }));
    }
    let mut commits = Vec::with_capacity(total as usize);
    for task in tasks {
        commits.extend(task.await??);
    }
    Ok(commits)
}

/// Reads the change stream, sending the order id and arrival time of every
/// insert event. Fails if the server drops this client for lagging.
async fn read_inserts(mut stream: reqwest::Response, seen: mpsc::UnboundedSender<(i64, Instant)>) -> anyhow::Result<()> {
    let mut buf = String::new();
    while let Some(chunk) = stream.chunk().await? {
        let now = Instant::now();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            anyhow::ensure!(!event.starts_with("event: lagged"), "the change stream dropped this client: {event}");
            if let Some(id) = inserted_order(&event) {
                if seen.send((id, now)).is_err() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// The order id of an `insert` event.
fn inserted_order(event: &str) -> Option<i64> {
    event.lines().find(|l| *l == "event: insert")?;
    let data = event.lines().find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str::<serde_json::Value>(data).ok()?["order_id"].as_i64()
}

/// Arrival times of the committed orders, until all have arrived or [`DRAIN`]
/// has passed. Inserts by other clients are ignored.
async fn collect_arrivals(mut seen: mpsc::UnboundedReceiver<(i64, Instant)>, commits: &[(i64, Instant)]) -> HashMap<i64, Instant> {
    let mine: std::collections::HashSet<i64> = commits.iter().map(|(id, _)| *id).collect();
    let mut arrivals = HashMap::with_capacity(mine.len());
    let deadline = tokio::time::Instant::now() + DRAIN;
    while arrivals.len() < mine.len() {
        match tokio::time::timeout_at(deadline, seen.recv()).await {
            Ok(Some((id, at))) if mine.contains(&id) => {
                arrivals.insert(id, at);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    arrivals
}

fn write_csv(path: &std::path::Path, samples: &[(Duration, Duration)]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "seconds_since_start,latency_ms")?;
    for (at, lag) in samples {
        writeln!(out, "{:.4},{:.3}", at.as_secs_f64(), lag.as_secs_f64() * 1000.0)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::inserted_order;

    #[test]
    fn only_insert_events_count() {
        assert_eq!(inserted_order("event: insert\ndata: {\"version\":3,\"op\":\"insert\",\"order_id\":42}\n\n"), Some(42));
        assert_eq!(inserted_order("event: update\ndata: {\"order_id\":42}\n\n"), None);
        assert_eq!(inserted_order(": keep-alive\n\n"), None);
    }
}
