//! `order_details_mv`: served from memory, one view version per response.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use super::params::{path_id, Params};
use super::{ApiError, AppState};
use crate::engine::OrderDetails;
use crate::pipeline::ViewState;

/// Headers that say which version a response was computed from and how fresh it is.
fn version_headers(view: &ViewState) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-view-version", view.version.into());
    if let Some(ms) = view.source_time_ms {
        h.insert("x-view-source-time-ms", ms.into());
    }
    h
}

/// `GET /order_details_mv?user_id=&status=&after=&limit=`, ascending order_id.
pub async fn list(State(state): State<AppState>, Query(raw): Query<HashMap<String, String>>) -> Result<impl IntoResponse, ApiError> {
    let p = Params::new(raw, &["user_id", "status", "after", "limit"])?;
    let user_id = p.int("user_id", 0, i64::MAX)?;
    let status = p.text("status", 255)?.map(str::to_string);
    let after = p.int("after", i64::MIN, i64::MAX)?;
    let limit = p.limit()? as usize;
    let view = state.shared.view.read();
    let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    let rows: Vec<Arc<OrderDetails>> = view
        .rows
        .range((start, std::ops::Bound::Unbounded))
        .map(|(_, row)| row)
        .filter(|r| user_id.is_none_or(|u| r.user_id == u))
        .filter(|r| status.as_deref().is_none_or(|s| r.order_status.as_deref() == Some(s)))
        .take(limit)
        .cloned()
        .collect();
    let headers = version_headers(&view);
    drop(view);
    Ok((headers, Json(rows)))
}

/// `GET /order_details_mv/{order_id}`.
pub async fn one(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let id = path_id("order_id", &raw)?;
    let view = state.shared.view.read();
    let row = view.rows.get(&id).cloned().ok_or_else(|| ApiError::NotFound(format!("no order {id} in the view")))?;
    Ok((version_headers(&view), Json(row)))
}

/// `GET /order_details_mv/changes`: Server-Sent Events, one per view delta,
/// from the current version on. A client too slow to keep up is sent a final
/// `lagged` event and dropped, so it never holds the pipeline back.
pub async fn changes(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = BroadcastStream::new(state.shared.changes.subscribe())
        .map(|item| match item {
            Ok(change) => (true, Event::default().event(change.op.as_str()).json_data(&*change).unwrap_or_default()),
            Err(BroadcastStreamRecvError::Lagged(n)) => {
                (false, Event::default().event("lagged").data(format!("this client fell {n} changes behind and was dropped; reconnect and re-read the view")))
            }
        })
        .scan(true, |open, (keep, event)| {
            let emit = if *open { Some(event) } else { None };
            *open = keep;
            std::future::ready(emit)
        })
        .map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
