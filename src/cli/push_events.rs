//! `cdcview push-events START END`: status events for random orders, each
//! order advancing through the statuses and leaving the rotation when finished.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::DeliveryFuture;
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

/// Deliveries awaited at most at once: enough to keep the broker's round
/// trip out of the rate (each send used to wait for its delivery, which held
/// the pusher at about 320 events/s), few enough to bound memory.
const IN_FLIGHT: usize = 10_000;

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
            .with_style(ProgressStyle::with_template("{bar:30} {pos}/{len} sent {per_sec} eta {eta} {msg}")?)
    };
    let mut deliveries = Deliveries::default();
    let mut next_id = now_micros() / 1000;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut warned = false;
    while sent < limit && !rotation.is_empty() {
        let slot = rng.random_range(0..rotation.len());
        let (order_id, step) = rotation[slot];
        next_id += 1;
        let event = StatusEvent { id: next_id, order_id, status: STATUSES[step].into(), updated_at: Timestamp(now_micros() / 1_000_000 * 1_000_000) };
        let payload = encode(&event);
        let key = order_id.to_string();
        let mut record = FutureRecord::to(&args.topic).key(&key).payload(&payload);
        // Queue it; while the producer's queue is full, wait for deliveries.
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.pending.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    deliveries.settle_one(&args).await?;
                }
                Err((e, _)) => anyhow::bail!("producing to {} on {} failed: {e}", args.topic, args.brokers),
            }
        }
        while deliveries.pending.len() > IN_FLIGHT {
            deliveries.settle_one(&args).await?;
        }
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
        if sent.is_multiple_of(1000) {
            bar.set_message(format!("{} delivered", deliveries.delivered));
        }
        let due = started + interval.mul_f64(sent as f64);
        let behind = Instant::now().saturating_duration_since(due);
        if behind > Duration::from_secs(1) && !warned {
            warned = true;
            let actual = sent as f64 / started.elapsed().as_secs_f64();
            bar.suspend(|| {
                eprintln!("warning: --rate {} cannot be held: {actual:.0} events/s so far (the broker or this machine limits it)", args.rate)
            });
        }
        tokio::time::sleep_until(due.into()).await;
    }
    while !deliveries.pending.is_empty() {
        deliveries.settle_one(&args).await?;
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    println!("sent {sent} status events to {} in {elapsed:.1} s ({:.0}/s), all delivered", args.topic, sent as f64 / elapsed.max(1e-9));
    Ok(())
}

/// The deliveries not yet confirmed by the broker.
#[derive(Default)]
struct Deliveries {
    pending: FuturesUnordered<DeliveryFuture>,
    delivered: u64,
}

impl Deliveries {
    /// Waits for one delivery; a failed one stops the pusher with its error.
    async fn settle_one(&mut self, args: &PushArgs) -> anyhow::Result<()> {
        match self.pending.next().await {
            Some(Ok(Ok(_))) => {
                self.delivered += 1;
                Ok(())
            }
            Some(Ok(Err((e, _)))) => anyhow::bail!("producing to {} on {} failed: {e}", args.topic, args.brokers),
            Some(Err(_)) => anyhow::bail!("the Kafka producer stopped before confirming a delivery"),
            None => Ok(()),
        }
    }
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}
