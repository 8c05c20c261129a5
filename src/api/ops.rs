//! Health, readiness, status and metrics.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use super::error::ErrorBody;
use super::{ApiError, AppState};

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "alive", body = String, example = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 once the view has caught up with the topics' end offsets
/// as they were at start, 503 before.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "the view is complete", body = String, example = "ready"),
    (status = 503, description = "still catching up", body = ErrorBody)))]
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if state.shared.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::NotReady("the view is still catching up with the topics".into()))
    }
}

/// Per-partition consumed and end offsets and lag, the view's version and
/// freshness, the sink's state and the decode error count.
#[utoipa::path(get, path = "/status", tag = "ops", responses((status = 200, description = "the pipeline's status", body = Object)))]
pub async fn status(State(state): State<AppState>) -> impl IntoResponse {
    let shared = &state.shared;
    let status = shared.status();
    let (version, rows, source_time_ms) = {
        let v = shared.view.read();
        (v.version, v.rows.len(), v.source_time_ms)
    };
    let now = crate::pipeline::now_ms();
    let topics: Vec<_> = status
        .partitions
        .iter()
        .map(|p| {
            serde_json::json!({"topic": p.topic, "partition": p.partition, "consumed_offset": p.next_offset, "end_offset": p.end_offset,
                "lag": p.lag(), "stalled": p.is_stalled(now), "retrying": p.retrying})
        })
        .collect();
    Json(serde_json::json!({
        "ready": shared.is_ready(),
        "view": {"rows": rows, "version": version, "source_time_ms": source_time_ms},
        "last_applied_ms": shared.last_applied_ms.load(Ordering::Relaxed),
        "changes_applied": shared.changes_applied.load(Ordering::Relaxed),
        "decode_errors": shared.decode_errors.load(Ordering::Relaxed),
        "transient_errors": shared.transient_errors.load(Ordering::Relaxed),
        "source": {"error": status.source_error, "partitions": topics},
        "sink": status.sink,
        "snapshot": status.snapshot,
        "transactions": status.transactions,
    }))
}

/// Metrics in Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String)))]
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
    gauge(
        "cdcview_transient_decode_errors_total",
        "records that could not be decoded for a transient reason (schema registry down) and are read again",
        shared.transient_errors.load(Ordering::Relaxed) as f64,
    );
    gauge("cdcview_source_time_ms", "time of the newest applied source record", source_time_ms.unwrap_or(0) as f64);
    gauge("cdcview_sink_ok", "1 when the PostgreSQL sink is writing", f64::from(u8::from(status.sink.state == "ok")));
    gauge("cdcview_sink_pending_rows", "view rows waiting to be written to PostgreSQL", status.sink.pending_rows as f64);
    let tx = status.transactions;
    gauge("cdcview_transaction_held_changes", "changes waiting for the rest of their MySQL transaction", tx.held_changes as f64);
    gauge("cdcview_transactions_released_total", "MySQL transactions applied whole", tx.released as f64);
    gauge("cdcview_transactions_timed_out_total", "MySQL transactions applied incomplete after the timeout", tx.timed_out as f64);
    let _ = writeln!(out, "# HELP cdcview_partition_lag records not yet consumed\n# TYPE cdcview_partition_lag gauge");
    for p in &status.partitions {
        let _ = writeln!(out, "cdcview_partition_lag{{topic=\"{}\",partition=\"{}\"}} {}", p.topic, p.partition, p.lag());
    }
    let now = crate::pipeline::now_ms();
    let _ = writeln!(
        out,
        "# HELP cdcview_partition_stalled_seconds how long records have waited without one arriving\n# TYPE cdcview_partition_stalled_seconds gauge"
    );
    for p in &status.partitions {
        let _ = writeln!(
            out,
            "cdcview_partition_stalled_seconds{{topic=\"{}\",partition=\"{}\"}} {}",
            p.topic,
            p.partition,
            p.stalled_for_ms(now) as f64 / 1000.0
        );
    }
    let _ = writeln!(out, "# HELP cdcview_partition_retrying 1 while the partition waits to read a record again (schema registry down)\n# TYPE cdcview_partition_retrying gauge");
    for p in &status.partitions {
        let _ = writeln!(out, "cdcview_partition_retrying{{topic=\"{}\",partition=\"{}\"}} {}", p.topic, p.partition, u8::from(p.retrying.is_some()));
    }
    shared.stages.encode(&mut out);
    state.http.encode(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
