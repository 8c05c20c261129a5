//! `cdcview push-events START END`: status events for random orders, each
//! order advancing through the statuses and leaving the rotation when finished.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::change::{StatusEvent, Timestamp};
use crate::decode::status::encode;

pub const STATUSES: [&str; 5] = ["received", "preparing", "cooked", "delivered", "finished"];

#[derive(Args, Debug)]
pub struct PushArgs {
    /// First order id (inclusive).
    pub start: i64,
    /// Last order id (exclusive).
    pub end: i64,
    /// Events per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate: f64,
    /// Stop after this many events (default: until every order is finished).
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, env = "CDCVIEW_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    #[arg(long, env = "CDCVIEW_STATUS_TOPIC", default_value = "order_updates")]
    pub topic: String,
    /// Seed of the random order choice, for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.start < args.end, "START ({}) must be below END ({})", args.start, args.end);
    anyhow::ensure!(args.rate > 0.0 && args.rate.is_finite(), "--rate must be a positive number");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "1")
        .set("message.timeout.ms", "10000")
        .create()
        .context("cannot create the Kafka producer")?;
    let mut rng = args.seed.map_or_else(|| StdRng::from_rng(&mut rand::rng()), StdRng::seed_from_u64);
    // Each order's next status; orders leave when finished.
    let mut rotation: Vec<(i64, usize)> = (args.start..args.end).map(|id| (id, 0)).collect();
    let limit = args.count.unwrap_or(u64::MAX);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let verbose = args.rate <= 20.0;
    let bar = if verbose {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(args.count.unwrap_or(rotation.len() as u64 * STATUSES.len() as u64))
            .with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} events {per_sec} eta {eta}")?)
    };
    let mut next_id = now_micros() / 1000;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < limit && !rotation.is_empty() {
        let slot = rng.random_range(0..rotation.len());
        let (order_id, step) = rotation[slot];
        next_id += 1;
        let event = StatusEvent { id: next_id, order_id, status: STATUSES[step].into(), updated_at: Timestamp(now_micros() / 1_000_000 * 1_000_000) };
        let payload = encode(&event);
        let key = order_id.to_string();
        producer
            .send(FutureRecord::to(&args.topic).key(&key).payload(&payload), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to {} on {} failed: {e}", args.topic, args.brokers))?;
        if step + 1 == STATUSES.len() {
            rotation.swap_remove(slot);
        } else {
            rotation[slot].1 += 1;
        }
        sent += 1;
        if verbose {
            println!("{}", String::from_utf8_lossy(&payload));
        }
        bar.inc(1);
        let due = started + interval.mul_f64(sent as f64);
        tokio::time::sleep_until(due.into()).await;
    }
    bar.finish_and_clear();
    println!("sent {sent} status events to {}", args.topic);
    Ok(())
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
