//! `cdcview bench reads`: point reads or pages of `order_details_mv` (or
//! `/healthz`) at fixed request rates (open loop), with latency percentiles
//! per rate.
//!
//! Each connection sends on a schedule, whatever the answers do (as wrk2
//! does): a request held back by a slow answer before it counts from when
//! it was due, so a stall shows in the percentiles instead of lowering the
//! rate. The server's own time per request comes from its `/metrics`.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use super::percentile;

#[derive(clap::Args, Debug)]
pub struct ReadsArgs {
    #[arg(long, env = "CDCVIEW_API", default_value = "http://127.0.0.1:8001")]
    pub api: String,
    /// Requests per second, one run each, comma-separated (for example
    /// 5000,10000,20000 to find the highest rate whose p99 holds).
    #[arg(long, default_value = "20000", value_delimiter = ',')]
    pub rates: Vec<f64>,
    /// Seconds per rate.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Keep-alive connections, each sending its share of the rate.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// `point`: GET /order_details_mv/{id} of an order in the view;
    /// `page`: GET /order_details_mv?limit=100&after={id}; `health`: GET
    /// /healthz, which reads no view: the floor of a round trip on this machine.
    #[arg(long, value_enum, default_value_t = ReadKind::Point)]
    pub kind: ReadKind,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadKind {
    Point,
    Page,
    Health,
}

impl ReadKind {
    fn path(self, id: i64) -> String {
        match self {
            ReadKind::Point => format!("/order_details_mv/{id}"),
            ReadKind::Page => format!("/order_details_mv?limit=100&after={id}"),
            ReadKind::Health => "/healthz".to_string(),
        }
    }

    /// The route label of this kind in `cdcview_http_request_duration_seconds`.
    fn route(self) -> &'static str {
        match self {
            ReadKind::Point => "/order_details_mv/{order_id}",
            ReadKind::Page => "/order_details_mv",
            ReadKind::Health => "/healthz",
        }
    }
}

/// What one connection saw during one run.
#[derive(Default)]
struct ConnResult {
    latencies: Vec<Duration>,
    errors: u64,
    /// Requests sent later than due because the previous answer was late.
    held_back: u64,
}

pub async fn run(args: ReadsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.duration > 0.0 && args.connections > 0, "--duration and --connections must be positive");
    anyhow::ensure!(args.rates.iter().all(|r| *r > 0.0 && r.is_finite()), "--rates must be positive numbers");
    let authority = args.api.trim_start_matches("http://").trim_end_matches('/').to_string();
    anyhow::ensure!(!authority.contains('/') && !args.api.starts_with("https"), "--api must be http://HOST:PORT");
    let ids = view_keys(&args.api).await?;
    eprintln!("{} orders in the view; {:?} reads over {} connections, {} s per rate", ids.len(), args.kind, args.connections, args.duration);
    println!(
        "{:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>12}",
        "asked/s", "done/s", "p50", "p90", "p99", "p99.9", "max", "errors", "held", "server p99"
    );
    for &rate in &args.rates {
        let before = server_histogram(&args.api, args.kind.route()).await?;
        let started = Instant::now();
        let results = run_rate(&authority, &ids, &args, rate).await?;
        let elapsed = started.elapsed();
        let after = server_histogram(&args.api, args.kind.route()).await?;
        print_row(rate, elapsed, results, server_p99(&before, &after));
    }
    Ok(())
}

/// Every order id in the view, paging through it.
async fn view_keys(api: &str) -> anyhow::Result<Vec<i64>> {
    #[derive(serde::Deserialize)]
    struct Row {
        order_id: i64,
    }
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    loop {
        let mut url = format!("{api}/order_details_mv?limit=1000");
        if let Some(last) = ids.last() {
            url.push_str(&format!("&after={last}"));
        }
        let page: Vec<Row> =
            client.get(&url).send().await.with_context(|| format!("reading {url} (is cdcview up? ./start.sh)"))?.error_for_status()?.json().await?;
        if page.is_empty() {
            break;
        }
        ids.extend(page.into_iter().map(|r| r.order_id));
    }
    anyhow::ensure!(!ids.is_empty(), "the view is empty: seed the shop first (cdcview seed)");
    Ok(ids)
}

async fn run_rate(authority: &str, ids: &[i64], args: &ReadsArgs, rate: f64) -> anyhow::Result<Vec<ConnResult>> {
    let interval = Duration::from_secs_f64(args.connections as f64 / rate);
    let per_conn = (rate * args.duration / args.connections as f64).ceil() as usize;
    let start = Instant::now() + Duration::from_millis(200);
    let plans: Vec<(Instant, Vec<String>)> = (0..args.connections)
        .map(|c| {
            // Spread the connections' schedules over one interval.
            let first = start + interval.mul_f64(c as f64 / args.connections as f64);
            let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(c as u64));
            (first, (0..per_conn).map(|_| args.kind.path(ids[rng.random_range(0..ids.len())])).collect())
        })
        .collect();
    let authority = authority.to_string();
    // One thread per connection: tokio's timer has millisecond steps, which
    // would send each millisecond's requests in one burst; a thread's sleep
    // keeps to the schedule within microseconds.
    tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            let authority = &authority;
            let threads: Vec<_> =
                plans.into_iter().map(|(first, paths)| scope.spawn(move || connection(authority, paths, first, interval))).collect();
            threads.into_iter().map(|t| t.join().map_err(|_| anyhow::anyhow!("a connection thread panicked"))?).collect()
        })
    })
    .await?
}

async fn connect(authority: &str) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await.with_context(|| format!("connecting to {authority}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    // The connection task ends when its sender is dropped.
    tokio::spawn(conn);
    Ok(sender)
}

/// One connection's requests, each sent when due (or as soon as the previous
/// answer is in, when that came late), on a runtime of its own thread.
fn connection(authority: &str, paths: Vec<String>, first: Instant, interval: Duration) -> anyhow::Result<ConnResult> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    runtime.block_on(async {
        let mut sender = connect(authority).await?;
        let mut out = ConnResult { latencies: Vec::with_capacity(paths.len()), ..ConnResult::default() };
        let mut previous_done = first;
        for (i, path) in paths.into_iter().enumerate() {
            let due = first + interval.mul_f64(i as f64);
            // Blocking this runtime is fine: its connection has nothing to
            // do between an answer and the next request.
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            // Counted from when it was due if the previous answer held it
            // back; from its sending otherwise.
            let held = previous_done > due;
            let from = if held { due } else { Instant::now() };
            out.held_back += u64::from(held);
            let request = hyper::Request::get(path).header("host", authority).body(Empty::new())?;
            let response = sender.send_request(request).await.context("a request failed")?;
            let ok = response.status().is_success();
            let _ = response.into_body().collect().await;
            out.errors += u64::from(!ok);
            previous_done = Instant::now();
            out.latencies.push(previous_done - from);
        }
        Ok(out)
    })
}

fn print_row(rate: f64, elapsed: Duration, results: Vec<ConnResult>, server_p99: Option<f64>) {
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let held: u64 = results.iter().map(|r| r.held_back).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|r| r.latencies).collect();
    all.sort_unstable();
    if all.is_empty() {
        return;
    }
    let ms = |d: Duration| format!("{:.2}ms", d.as_secs_f64() * 1000.0);
    println!(
        "{:>9.0} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>12}",
        rate,
        all.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.90)),
        ms(percentile(&all, 0.99)),
        ms(percentile(&all, 0.999)),
        ms(*all.last().unwrap_or(&Duration::ZERO)),
        errors,
        held,
        server_p99.map_or("-".into(), |s| format!("<={:.2}ms", s * 1000.0)),
    );
}

/// The cumulative buckets `(le, count)` of the request-duration histogram
/// for GET requests on `route` with status 200.
async fn server_histogram(api: &str, route: &str) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = reqwest::get(format!("{api}/metrics")).await?.error_for_status()?.text().await?;
    let want = format!("route=\"{route}\"");
    Ok(text
        .lines()
        .filter(|l| l.starts_with("cdcview_http_request_duration_seconds_bucket{") && l.contains(&want) && l.contains("status=\"200\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect())
}

/// The bucket bound under which 99% of the requests between two readings
/// were answered (handler time, up to the response's head).
fn server_p99(before: &[(f64, u64)], after: &[(f64, u64)]) -> Option<f64> {
    let bounds: Vec<f64> = after.iter().map(|(le, _)| *le).collect();
    let counts =
        |reading: &[(f64, u64)]| -> Vec<u64> { bounds.iter().map(|le| reading.iter().find(|(b, _)| b == le).map_or(0, |(_, n)| *n)).collect() };
    super::stages::quantile_bound(&bounds, &counts(before), &counts(after), 0.99)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_p99_reads_the_bucket_holding_the_99th_percentile_of_what_was_added() {
        let before = [(0.001, 10), (0.002, 10), (f64::INFINITY, 10)];
        // 100 added: 98 under 1 ms, one more under 2 ms, one slower.
        let after = [(0.001, 108), (0.002, 109), (f64::INFINITY, 110)];
        assert_eq!(server_p99(&before, &after), Some(0.002));
        assert_eq!(server_p99(&after, &after), None);
    }

    #[test]
    fn paths_name_the_order() {
        assert_eq!(ReadKind::Point.path(7), "/order_details_mv/7");
        assert_eq!(ReadKind::Page.path(7), "/order_details_mv?limit=100&after=7");
    }
}
