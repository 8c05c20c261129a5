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

use super::error::ErrorBody;
use super::params::{path_id, Params};
use super::{ApiError, AppState};
use crate::engine::OrderDetails;
use crate::pipeline::{ChangeEvent, Resume, StreamPos, ViewState};

/// Headers that say which version a response was computed from and how fresh it is.
fn version_headers(view: &ViewState) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-view-version", view.version.into());
    if let Some(ms) = view.source_time_ms {
        h.insert("x-view-source-time-ms", ms.into());
    }
    h
}

/// Rows of the materialized view, by ascending `order_id`, from one view version.
#[utoipa::path(get, path = "/order_details_mv", tag = "view",
    params(
        ("user_id" = Option<i64>, Query, description = "only this user's orders"),
        ("status" = Option<String>, Query, description = "only orders in this status"),
        ("after" = Option<i64>, Query, description = "cursor: only order_ids greater than this (the last order_id of the previous page)"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000", minimum = 1, maximum = 1000, example = 100),
    ),
    responses(
        (status = 200, description = "a page of rows", body = [OrderDetails], headers(
            ("x-view-version" = u64, description = "the view version the page was read from"),
            ("x-view-source-time-ms" = i64, description = "time of the newest source change applied to that version, Unix ms"))),
        (status = 400, description = "a bad or unknown parameter", body = ErrorBody),
    ))]
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

/// One row of the materialized view.
#[utoipa::path(get, path = "/order_details_mv/{order_id}", tag = "view",
    params(("order_id" = i64, Path, description = "the order's id")),
    responses(
        (status = 200, description = "the row", body = OrderDetails, headers(
            ("x-view-version" = u64, description = "the view version the row was read from"))),
        (status = 400, description = "not an id", body = ErrorBody),
        (status = 404, description = "no such order in the view", body = ErrorBody),
    ))]
pub async fn one(State(state): State<AppState>, Path(raw): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let id = path_id("order_id", &raw)?;
    let view = state.shared.view.read();
    let row = view.rows.get(&id).cloned().ok_or_else(|| ApiError::NotFound(format!("no order {id} in the view")))?;
    Ok((version_headers(&view), Json(row)))
}

/// Reads a change-stream position: `version.index` (after that event) or
/// `version` (after all of that version's events).
fn parse_position(text: &str) -> Option<StreamPos> {
    match text.trim().split_once('.') {
        Some((version, index)) => Some((version.parse().ok()?, index.parse().ok()?)),
        None => Some((text.trim().parse().ok()?, u32::MAX)),
    }
}

fn change_event(change: &ChangeEvent) -> Event {
    Event::default().event(change.op.as_str()).id(format!("{}.{}", change.version, change.index)).json_data(change).unwrap_or_default()
}

/// Server-Sent Events, one per view delta (event `insert`, `update` or
/// `delete`), from the current version on. Each event's id is
/// `version.index`. A client that reconnects with that id in
/// `Last-Event-ID` (or `?last_event_id=`) first receives exactly the events
/// it missed, from a log of the newest events; when it is older than the
/// log, it gets a `reset` event instead: re-read the view, and skip events
/// whose version is not above the version read. A client too slow to keep
/// up is sent a `lagged` event and dropped, so it never holds the pipeline
/// back; it reconnects with its last id and misses nothing.
#[utoipa::path(get, path = "/order_details_mv/changes", tag = "view",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (`version.index`, or a version for all of its events)"),
        ("last_event_id" = Option<String>, Query, description = "the same, for clients that cannot set the header"),
    ),
    responses(
        (status = 200, description = "an event stream; each event's data is a ChangeEvent", content_type = "text/event-stream", body = ChangeEvent),
        (status = 400, description = "a malformed event id", body = ErrorBody),
    ))]
pub async fn changes(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = last_event_id(&headers, raw)?;
    let (receiver, resume) = state.shared.subscribe_changes(after);
    Ok(event_stream(receiver, resume, |e: &ChangeEvent| change_event(e)))
}

/// The position a change-stream client resumes after: `Last-Event-ID`, or
/// `?last_event_id=` for clients that cannot set the header.
pub(super) fn last_event_id(headers: &HeaderMap, raw: HashMap<String, String>) -> Result<Option<StreamPos>, ApiError> {
    let p = Params::new(raw, &["last_event_id"])?;
    let given = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string).or(p.text("last_event_id", 64)?.map(str::to_string));
    match given.as_deref() {
        Some(text) => {
            Ok(Some(parse_position(text).ok_or_else(|| ApiError::bad("Last-Event-ID", "expected VERSION or VERSION.INDEX, as in an event's id"))?))
        }
        None => Ok(None),
    }
}

/// A change stream: what the client missed (or a `reset`), then the live
/// events; a client that falls behind gets `lagged` and is dropped.
pub(super) fn event_stream<E: Send + Sync + 'static>(
    receiver: tokio::sync::broadcast::Receiver<Arc<E>>,
    resume: Option<Resume<E>>,
    render: impl Fn(&E) -> Event + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let missed: Vec<Event> = match resume {
        None => Vec::new(),
        Some(Resume::Missed(events)) => events.iter().map(|e| render(e)).collect(),
        Some(Resume::Reset { version }) => vec![Event::default()
            .event("reset")
            .id(format!("{version}"))
            .json_data(serde_json::json!({
                "version": version,
                "message": "the events since the given id are no longer kept: re-read the view and skip events whose version is not above the x-view-version it was read at"
            }))
            .unwrap_or_default()],
    };
    let live = BroadcastStream::new(receiver)
        .map(move |item| match item {
            Ok(change) => (true, render(&change)),
            Err(BroadcastStreamRecvError::Lagged(n)) => (
                false,
                Event::default()
                    .event("lagged")
                    .data(format!("this client fell {n} changes behind and was dropped; reconnect with the last event id to receive what it missed")),
            ),
        })
        .scan(true, |open, (keep, event)| {
            let emit = if *open { Some(event) } else { None };
            *open = keep;
            std::future::ready(emit)
        });
    Sse::new(futures::stream::iter(missed).chain(live).map(Ok)).keep_alive(KeepAlive::default())
}
