//! Where a change's time goes inside cdcview, stage by stage: latency
//! histograms that `/metrics` serves and `cdcview bench freshness` reads.
//!
//! ```text
//! record written to Kafka (its timestamp) --broker--> polled by cdcview
//!   --transaction--> its MySQL transaction complete --apply--> visible in the API
//! ```
//!
//! `broker` counts records, the other two count changes; a change that
//! nothing held back waited 0 in `transaction`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: fine around the tens of
/// milliseconds where the freshness goals lie.
pub const BOUNDS: [f64; 30] = [
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.010, 0.015, 0.020, 0.025, 0.030, 0.040, 0.050, 0.060, 0.075, 0.100, 0.125, 0.150,
    0.200, 0.250, 0.300, 0.400, 0.500, 0.750, 1.0, 2.0, 5.0, 10.0,
];

/// A Prometheus histogram that takes many equal observations at once (a
/// batch's changes all wait the same).
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_micros: AtomicU64::new(0) }
    }
}

impl Histogram {
    /// Records `n` observations of `d`.
    pub fn observe(&self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        let bucket = BOUNDS.iter().position(|&b| secs <= b).unwrap_or(BOUNDS.len());
        self.counts[bucket].fetch_add(n, Ordering::Relaxed);
        self.sum_micros.fetch_add((d.as_micros() as u64).saturating_mul(n), Ordering::Relaxed);
    }

    /// Writes the series of one labelled histogram (`name_bucket`, `_sum`, `_count`).
    fn encode(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let le = BOUNDS.get(i).map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// The stages of the path through cdcview, each a histogram.
#[derive(Default)]
pub struct Stages {
    /// Record timestamp (set by its producer: Debezium's runner, the event
    /// pusher) to the poll that read it.
    pub broker: Histogram,
    /// Read to released: how long a change waited for the rest of its MySQL
    /// transaction.
    pub transaction: Histogram,
    /// Released to visible: decoding, the engine, the SQL views and the
    /// swap of the served view, for the batch the change went in.
    pub apply: Histogram,
}

impl Stages {
    pub const METRIC: &'static str = "cdcview_stage_seconds";

    /// The histograms in Prometheus text format.
    pub fn encode(&self, out: &mut String) {
        let name = Self::METRIC;
        let _ = writeln!(
            out,
            "# HELP {name} time spent in each stage from Kafka to the API: broker (record timestamp to poll), \
             transaction (held for the rest of its MySQL transaction), apply (to visible in the API)\n# TYPE {name} histogram"
        );
        for (stage, h) in [("broker", &self.broker), ("transaction", &self.transaction), ("apply", &self.apply)] {
            h.encode(name, &format!("stage=\"{stage}\""), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_line<'a>(text: &'a str, stage: &str, le: &str) -> &'a str {
        let prefix = format!("cdcview_stage_seconds_bucket{{stage=\"{stage}\",le=\"{le}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str())).unwrap_or_else(|| panic!("no bucket {stage} {le} in\n{text}"))
    }

    #[test]
    fn observations_land_in_cumulative_buckets_with_sum_and_count() {
        let stages = Stages::default();
        stages.apply.observe(Duration::from_micros(1_500), 3); // <= 0.002
        stages.apply.observe(Duration::from_millis(45), 1); // <= 0.05
        stages.apply.observe(Duration::from_secs(60), 1); // +Inf
        stages.broker.observe(Duration::from_millis(1), 0); // nothing
        let mut text = String::new();
        stages.encode(&mut text);
        assert_eq!(bucket_line(&text, "apply", "0.001"), "0");
        assert_eq!(bucket_line(&text, "apply", "0.002"), "3");
        assert_eq!(bucket_line(&text, "apply", "0.04"), "3");
        assert_eq!(bucket_line(&text, "apply", "0.05"), "4");
        assert_eq!(bucket_line(&text, "apply", "10"), "4");
        assert_eq!(bucket_line(&text, "apply", "+Inf"), "5");
        assert!(text.contains("cdcview_stage_seconds_count{stage=\"apply\"} 5\n"), "{text}");
        assert!(text.contains("cdcview_stage_seconds_sum{stage=\"apply\"} 60.0495\n"), "{text}");
        assert_eq!(bucket_line(&text, "broker", "+Inf"), "0");
        assert!(text.contains("# TYPE cdcview_stage_seconds histogram"));
    }
}
