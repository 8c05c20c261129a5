//! HTTP request metrics: a duration histogram per method, route and status.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    /// The route template (`/order_details_mv/{order_id}`), never the raw path,
    /// so hostile paths cannot grow the label set.
    route: String,
    status: u16,
}

/// Buckets from 50 µs to about 1.6 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct HttpMetrics {
    registry: Registry,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        let durations = Family::<RequestLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        let mut registry = Registry::default();
        registry.register("cdcview_http_request_duration_seconds", "HTTP request durations, to the response's head", durations.clone());
        HttpMetrics { registry, durations }
    }
}

impl HttpMetrics {
    /// The metrics in Prometheus text format.
    pub fn encode(&self, out: &mut String) {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(out, &self.registry);
    }
}

/// Middleware: times each routed request.
pub async fn track(State(state): State<AppState>, route: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = route.map_or_else(|| "unmatched".to_string(), |r| r.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels { method, route, status: response.status().as_u16() };
    state.http.durations.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    response
}
