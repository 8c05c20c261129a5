//! Health, readiness, status and metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::{ApiError, AppState};

pub async fn healthz() -> &'static str {
    "ok"
}

/// 200 once the view has caught up with the topics as they were at start.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.shared.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::NotReady("the view is still catching up with the topics".into()))
    }
}

pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let shared = &state.shared;
    let status = shared.status();
    let (version, rows, source_time_ms) = {
        let v = shared.view.read();
        (v.version, v.rows.len(), v.source_time_ms)
    };
    let topics: Vec<_> = status
        .partitions
        .iter()
        .map(|p| serde_json::json!({"topic": p.topic, "partition": p.partition, "consumed_offset": p.next_offset, "end_offset": p.end_offset, "lag": p.lag()}))
        .collect();
    Json(serde_json::json!({
        "ready": shared.is_ready(),
        "view": {"rows": rows, "version": version, "source_time_ms": source_time_ms},
        "last_applied_ms": shared.last_applied_ms.load(Ordering::Relaxed),
        "changes_applied": shared.changes_applied.load(Ordering::Relaxed),
        "decode_errors": shared.decode_errors.load(Ordering::Relaxed),
        "source": {"error": status.source_error, "partitions": topics},
        "sink": status.sink,
    }))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let shared = &state.shared;
    let status = shared.status();
    let (rows, version, source_time_ms) = {
        let v = shared.view.read();
        (v.rows.len(), v.version, v.source_time_ms)
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("cdcview_ready", "1 once the view has caught up with the topics", f64::from(u8::from(shared.is_ready())));
    gauge("cdcview_view_rows", "rows in order_details_mv", rows as f64);
    gauge("cdcview_view_version", "version of the served view", version as f64);
    gauge("cdcview_changes_applied_total", "source changes applied", shared.changes_applied.load(Ordering::Relaxed) as f64);
    gauge("cdcview_decode_errors_total", "records that could not be decoded", shared.decode_errors.load(Ordering::Relaxed) as f64);
    gauge("cdcview_source_time_ms", "time of the newest applied source record", source_time_ms.unwrap_or(0) as f64);
    gauge("cdcview_sink_ok", "1 when the PostgreSQL sink is writing", f64::from(u8::from(status.sink.state == "ok")));
    gauge("cdcview_sink_pending_rows", "view rows waiting to be written to PostgreSQL", status.sink.pending_rows as f64);
    let _ = writeln!(out, "# HELP cdcview_partition_lag records not yet consumed\n# TYPE cdcview_partition_lag gauge");
    for p in &status.partitions {
        let _ = writeln!(out, "cdcview_partition_lag{{topic=\"{}\",partition=\"{}\"}} {}", p.topic, p.partition, p.lag());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
