//! The freshness benchmark's stage table: where the time between a MySQL
//! commit and the API's change event goes. Upstream stages are timed per
//! order from the Debezium records themselves (read from Kafka alongside
//! cdcview); cdcview's own stages come from its `/metrics` histograms,
//! read before and after the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::pipeline::{Stages, STAGE_BOUNDS};

/// When Debezium read an order's row and when its record was written to
/// Kafka, both in µs since the epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Upstream {
    pub debezium_us: i64,
    pub kafka_us: i64,
}

/// Reads the orders topic from its current end on a thread of its own,
/// noting each inserted order's [`Upstream`] times, until stopped.
pub struct OrdersWatch {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<HashMap<i64, Upstream>>,
}

impl OrdersWatch {
    pub fn start(brokers: &str, topic: &str) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "cdcview-bench-freshness")
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "10")
            .create()
            .with_context(|| format!("connecting to Kafka at {brokers}"))?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).with_context(|| format!("reading {topic}'s partitions"))?;
        let partitions: Vec<i32> = metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions (is the stack up?)");
        // Start at each partition's end as it is now, so no order of the run is missed.
        let mut assignment = TopicPartitionList::new();
        for p in partitions {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
            assignment.add_partition_offset(topic, p, Offset::Offset(high))?;
        }
        consumer.assign(&assignment)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut seen = HashMap::new();
            while !stopped.load(Ordering::Relaxed) {
                let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else { continue };
                let (Some(payload), Some(kafka_ms)) = (msg.payload(), msg.timestamp().to_millis()) else { continue };
                if let Some((order_id, debezium_us)) = inserted_order(payload) {
                    seen.insert(order_id, Upstream { debezium_us, kafka_us: kafka_ms * 1000 });
                }
            }
            seen
        });
        Ok(OrdersWatch { stop, thread })
    }

    pub fn finish(self) -> HashMap<i64, Upstream> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// The order id of a Debezium insert (`op: c`) and when Debezium read it:
/// the envelope's `ts_us` (Debezium 2.6 and later), else `ts_ms`.
fn inserted_order(payload: &[u8]) -> Option<(i64, i64)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let v = v.get("payload").unwrap_or(&v);
    (v["op"] == "c").then_some(())?;
    let at = v["ts_us"].as_i64().or_else(|| v["ts_ms"].as_i64().map(|ms| ms * 1000))?;
    Some((v["after"]["order_id"].as_i64()?, at))
}

/// Cumulative bucket counts of each stage of `cdcview_stage_seconds`.
pub type StageBuckets = HashMap<String, Vec<u64>>;

/// Reads cdcview's stage histograms from `/metrics`.
pub async fn read_stages(api: &str) -> anyhow::Result<StageBuckets> {
    let url = format!("{api}/metrics");
    let text = reqwest::get(&url).await.with_context(|| format!("reading {url}"))?.error_for_status()?.text().await?;
    Ok(parse_stages(&text))
}

fn parse_stages(text: &str) -> StageBuckets {
    let prefix = format!("{}_bucket{{stage=\"", Stages::METRIC);
    let mut out: StageBuckets = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(prefix.as_str()) else { continue };
        let Some((stage, rest)) = rest.split_once('"') else { continue };
        let Some(count) = rest.rsplit(' ').next().and_then(|c| c.parse().ok()) else { continue };
        out.entry(stage.to_string()).or_default().push(count);
    }
    out
}

/// A stage's quantiles: exact from samples, or a bucket's upper bound.
#[derive(Debug, PartialEq)]
enum Figures {
    Exact { p50: Duration, p99: Duration, max: Duration, n: usize },
    AtMost { p50: f64, p99: f64, max: f64, n: u64 },
}

/// p50, p99 and the largest observation of the counts added between two
/// readings, each as the upper bound of its bucket (`None` when nothing was
/// observed). The `+Inf` bucket reads as infinity.
fn bucket_figures(before: &[u64], after: &[u64]) -> Option<Figures> {
    let at = |q: f64| quantile_bound(&STAGE_BOUNDS, before, after, q);
    let total = after.last()?.saturating_sub(before.last().copied().unwrap_or(0));
    Some(Figures::AtMost { p50: at(0.50)?, p99: at(0.99)?, max: at(1.0)?, n: total })
}

/// The upper bound of the bucket holding quantile `q` of the observations
/// added between two readings of a histogram's cumulative bucket counts
/// (`bounds[i]` bounds bucket `i`; past the last bound is `+Inf`); `None`
/// when nothing was added.
pub fn quantile_bound(bounds: &[f64], before: &[u64], after: &[u64], q: f64) -> Option<f64> {
    let counts: Vec<u64> = after.iter().enumerate().map(|(i, a)| a.saturating_sub(before.get(i).copied().unwrap_or(0))).collect();
    let total = *counts.last()?;
    if total == 0 {
        return None;
    }
    let at = counts.iter().position(|&c| c as f64 >= q * total as f64).unwrap_or(counts.len() - 1);
    Some(bounds.get(at).copied().unwrap_or(f64::INFINITY))
}

fn exact_figures(mut samples: Vec<Duration>) -> Option<Figures> {
    samples.sort_unstable();
    let max = *samples.last()?;
    Some(Figures::Exact { p50: super::percentile(&samples, 0.50), p99: super::percentile(&samples, 0.99), max, n: samples.len() })
}

/// Per order: commit, Debezium read, Kafka write and API event times, µs.
pub struct OrderTimes {
    pub commit_us: i64,
    pub upstream: Option<Upstream>,
    pub event_us: i64,
}

/// The stage table, one line per stage: p50, p99 and max, and how many
/// samples (orders, or records/changes for cdcview's histograms).
pub fn table(orders: &[OrderTimes], before: &StageBuckets, after: &StageBuckets) -> String {
    let span = |from: i64, to: i64| Duration::from_micros(to.saturating_sub(from).max(0) as u64);
    let upstream: Vec<(&OrderTimes, Upstream)> = orders.iter().filter_map(|o| Some((o, o.upstream?))).collect();
    let mut rows: Vec<(String, Option<Figures>)> = vec![
        (
            "MySQL commit -> Debezium reads it (envelope ts)".into(),
            exact_figures(upstream.iter().map(|(o, u)| span(o.commit_us, u.debezium_us)).collect()),
        ),
        (
            "Debezium -> record in Kafka (record timestamp)".into(),
            exact_figures(upstream.iter().map(|(_, u)| span(u.debezium_us, u.kafka_us)).collect()),
        ),
        ("record in Kafka -> event on /changes".into(), exact_figures(upstream.iter().map(|(o, u)| span(u.kafka_us, o.event_us)).collect())),
    ];
    for (stage, what) in [
        ("broker", "  in cdcview: record timestamp -> polled"),
        ("transaction", "  in cdcview: polled -> its transaction complete"),
        ("apply", "  in cdcview: complete -> visible in the API"),
    ] {
        let figures = after.get(stage).and_then(|a| bucket_figures(before.get(stage).map_or(&[], Vec::as_slice), a));
        rows.push((what.into(), figures));
    }
    rows.push((
        "MySQL commit -> event on /changes (end to end)".into(),
        exact_figures(orders.iter().map(|o| span(o.commit_us, o.event_us)).collect()),
    ));
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let at_most = |s: f64| if s.is_finite() { format!("<= {} ms", s * 1000.0) } else { format!("> {} s", STAGE_BOUNDS[STAGE_BOUNDS.len() - 1]) };
    let mut out = format!("{:<52} {:>12} {:>12} {:>12} {:>9}\n", "stage", "p50", "p99", "max", "samples");
    for (name, figures) in rows {
        let cells = match figures {
            Some(Figures::Exact { p50, p99, max, n }) => [ms(p50), ms(p99), ms(max), n.to_string()],
            Some(Figures::AtMost { p50, p99, max, n }) => [at_most(p50), at_most(p99), at_most(max), n.to_string()],
            None => ["-".into(), "-".into(), "-".into(), "0".into()],
        };
        out.push_str(&format!("{name:<52} {:>12} {:>12} {:>12} {:>9}\n", cells[0], cells[1], cells[2], cells[3]));
    }
    out.push_str("(cdcview's own stages are read from its /metrics histograms: each figure is the upper bound of its bucket, over every record or change of the run)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_debezium_insert_gives_its_order_and_read_time() {
        let with_us = br#"{"before":null,"after":{"order_id":7,"user_id":1},"op":"c","ts_ms":1795404853560,"ts_us":1795404853560123}"#;
        assert_eq!(inserted_order(with_us), Some((7, 1_795_404_853_560_123)));
        let ms_only = br#"{"payload":{"after":{"order_id":8},"op":"c","ts_ms":1795404853560}}"#;
        assert_eq!(inserted_order(ms_only), Some((8, 1_795_404_853_560_000)));
        let update = br#"{"after":{"order_id":7},"op":"u","ts_ms":1}"#;
        assert_eq!(inserted_order(update), None);
    }

    #[test]
    fn bucket_quantiles_come_from_what_the_run_added() {
        let stages = Stages::default();
        stages.apply.observe(Duration::from_millis(200), 10); // before the run
        let mut text = String::new();
        stages.encode(&mut text);
        let before = parse_stages(&text);
        stages.apply.observe(Duration::from_micros(800), 98); // <= 0.001
        stages.apply.observe(Duration::from_millis(45), 2); // <= 0.05
        let mut text = String::new();
        stages.encode(&mut text);
        let after = parse_stages(&text);
        assert_eq!(after["apply"].len(), STAGE_BOUNDS.len() + 1);
        assert_eq!(bucket_figures(&before["apply"], &after["apply"]), Some(Figures::AtMost { p50: 0.001, p99: 0.05, max: 0.05, n: 100 }));
        assert_eq!(bucket_figures(&before["broker"], &after["broker"]), None);
    }

    #[test]
    fn the_table_times_each_stage_per_order() {
        let orders =
            vec![OrderTimes { commit_us: 1_000_000, upstream: Some(Upstream { debezium_us: 1_004_000, kafka_us: 1_010_000 }), event_us: 1_030_000 }];
        let text = table(&orders, &StageBuckets::new(), &StageBuckets::new());
        let line = |start: &str| text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no {start} in\n{text}")).to_string();
        assert!(line("MySQL commit -> Debezium").contains("4.0 ms"), "{text}");
        assert!(line("Debezium -> record in Kafka").contains("6.0 ms"), "{text}");
        assert!(line("record in Kafka -> event").contains("20.0 ms"), "{text}");
        assert!(line("MySQL commit -> event").contains("30.0 ms"), "{text}");
        assert!(line("  in cdcview: record timestamp").ends_with(" 0"), "{text}");
    }
}
