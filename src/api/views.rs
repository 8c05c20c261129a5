//! `/views`: every materialized view declared in SQL, served the same way:
//! rows by ascending key, a cursor, equality filters, one row by key.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::rejection::ExtensionRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::Event;
use axum::response::IntoResponse;
use axum::Json;
use cdcview_engine::{Row, SharedRow, Value};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::error::ErrorBody;
use super::params::{Params, MAX_LIMIT};
use super::{ApiError, AppState};
use crate::engine::shop_rows::view_row;
use tokio::sync::oneshot;

use crate::views::{key_text, parse_key, value_json, value_text, ChangeError, PublishedView, ViewCommand, ViewEvent};

/// A column of a view.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ColumnInfo {
    pub name: String,
    /// The SQL type: `bigint`, `numeric`, `text`, `timestamptz`, ...
    #[serde(rename = "type")]
    pub ty: String,
    pub nullable: bool,
}

/// A served view: its columns, key and size.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ViewInfo {
    pub name: String,
    pub columns: Vec<ColumnInfo>,
    /// The key columns: one row per key, rows in ascending key order.
    pub key: Vec<String>,
    pub rows: usize,
    /// `built-in` (order_details_mv as shipped) or `sql`.
    pub engine: &'static str,
    /// Added while running (`POST /views`), so it can be dropped.
    pub posted: bool,
}

fn info(state: &AppState, view: &PublishedView) -> ViewInfo {
    let v = &view.info;
    let rows = if v.built_in { state.shared.view.read().rows.len() } else { view.rows.read().by_key.len() };
    ViewInfo {
        name: v.name.clone(),
        columns: v.columns.iter().map(|c| ColumnInfo { name: c.name.clone(), ty: c.ty.to_string(), nullable: c.nullable }).collect(),
        key: v.key.iter().map(|&k| v.columns[k].name.clone()).collect(),
        rows,
        engine: if v.built_in { "built-in" } else { "sql" },
        posted: v.posted,
    }
}

/// Every materialized view served, in declaration order.
#[utoipa::path(get, path = "/views", tag = "views", responses((status = 200, description = "the views", body = [ViewInfo])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ViewInfo>> {
    Json(state.views.all().iter().map(|v| info(&state, v)).collect())
}

fn view(state: &AppState, name: &str) -> Result<Arc<PublishedView>, ApiError> {
    state.views.get(name).ok_or_else(|| ApiError::NotFound(format!("no view named {name}; GET /views lists them")))
}

/// Who may add and drop views, and where the pipeline takes the requests.
#[derive(Clone)]
pub struct Admin {
    token: Option<Arc<str>>,
    commands: std::sync::mpsc::Sender<ViewCommand>,
}

impl Admin {
    pub fn new(token: Option<String>, commands: std::sync::mpsc::Sender<ViewCommand>) -> Self {
        Admin { token: token.filter(|t| !t.is_empty()).map(Arc::from), commands }
    }

    /// With a token, the request must carry it; without one, it must come
    /// from this machine.
    fn authorize(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<(), ApiError> {
        match &self.token {
            Some(token) => {
                let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
                match given {
                    None => Err(ApiError::Unauthorized("this needs Authorization: Bearer <CDCVIEW_ADMIN_TOKEN>".into())),
                    Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
                    Some(_) => Err(ApiError::Forbidden("the token is not the admin token".into())),
                }
            }
            None if peer.is_some_and(|p| p.ip().is_loopback()) => Ok(()),
            None => Err(ApiError::Forbidden("views are changed from this machine only; set CDCVIEW_ADMIN_TOKEN to allow others with a token".into())),
        }
    }

    /// Sends a request to the pipeline and waits for its answer.
    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> ViewCommand) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| ApiError::NotReady("the pipeline has stopped".into()))?;
        match tokio::time::timeout(std::time::Duration::from_secs(300), answer).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(ApiError::NotReady("the pipeline has stopped".into())),
            Err(_) => Err(ApiError::NotReady("the pipeline did not answer within 300 s; the view may still be added".into())),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn admin(state: &AppState, headers: &HeaderMap, peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>) -> Result<Admin, ApiError> {
    let admin = state
        .admin
        .clone()
        .ok_or_else(|| ApiError::Forbidden("views cannot change while running: start with --runtime-views (CDCVIEW_RUNTIME_VIEWS=true)".into()))?;
    admin.authorize(headers, peer.ok().map(|ConnectInfo(p)| p))?;
    Ok(admin)
}

impl From<ChangeError> for ApiError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Invalid(m) => ApiError::BadSql(m),
            ChangeError::Conflict(m) => ApiError::Conflict(m),
            ChangeError::NotFound(m) => ApiError::NotFound(m),
            ChangeError::TooLarge(m) => ApiError::Limit(m),
            ChangeError::Off(m) => ApiError::Forbidden(m),
        }
    }
}

/// Adds a materialized view while running: the body is one `CREATE
/// MATERIALIZED VIEW` statement. The view is filled from the sources'
/// current rows (no replay), then maintained, served, written to its own
/// PostgreSQL table, and kept across restarts.
#[utoipa::path(post, path = "/views", tag = "views",
    request_body(content = String, content_type = "application/sql", description = "CREATE MATERIALIZED VIEW name AS SELECT ..."),
    responses(
        (status = 201, description = "the view, filled", body = ViewInfo),
        (status = 400, description = "SQL refused: the message names the construct, line and column", body = ErrorBody),
        (status = 401, description = "no token, and one is required", body = ErrorBody),
        (status = 403, description = "a wrong token, a client not on this machine, or runtime views off", body = ErrorBody),
        (status = 409, description = "the name is taken", body = ErrorBody),
        (status = 415, description = "not application/sql or text/plain", body = ErrorBody),
        (status = 422, description = "a bound exceeded (views posted, rows, statement size)", body = ErrorBody),
    ))]
pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
    body: String,
) -> Result<impl IntoResponse, ApiError> {
    let admin = admin(&state, &headers, peer)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(essence, "application/sql" | "text/plain") {
        return Err(ApiError::UnsupportedMediaType(format!("send the statement as application/sql, not {content_type:?}")));
    }
    let served = admin.ask(|reply| ViewCommand::Add { sql: body, reply }).await??;
    let view = state.views.get(&served.name).ok_or_else(|| ApiError::NotFound(format!("{} was dropped meanwhile", served.name)))?;
    let location = format!("/views/{}", served.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(info(&state, &view))))
}

/// Drops a view posted at run time, and its PostgreSQL table.
#[utoipa::path(delete, path = "/views/{name}", tag = "views",
    params(("name" = String, Path, description = "the view's name")),
    responses(
        (status = 204, description = "dropped"),
        (status = 401, description = "no token, and one is required", body = ErrorBody),
        (status = 403, description = "a wrong token, a client not on this machine, or runtime views off", body = ErrorBody),
        (status = 404, description = "no such view", body = ErrorBody),
        (status = 409, description = "declared in the view files, or read by another view", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    peer: Result<ConnectInfo<SocketAddr>, ExtensionRejection>,
) -> Result<StatusCode, ApiError> {
    let admin = admin(&state, &headers, peer)?;
    admin.ask(|reply| ViewCommand::Drop { name, reply }).await??;
    Ok(StatusCode::NO_CONTENT)
}

/// Server-Sent Events, one per changed row of the view (event `insert`,
/// `update` or `delete`; data `{version, key, before, after}`, rows as
/// `GET /views/{name}` writes them), with the id `version.index`;
/// reconnecting with `Last-Event-ID` replays exactly what was missed, as
/// `/order_details_mv/changes` does (whose events `order_details_mv` here
/// also sends).
#[utoipa::path(get, path = "/views/{name}/changes", tag = "views",
    params(
        ("name" = String, Path, description = "the view's name"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this event id (`version.index`, or a version for all of its events)"),
        ("last_event_id" = Option<String>, Query, description = "the same, for clients that cannot set the header"),
    ),
    responses(
        (status = 200, description = "an event stream", content_type = "text/event-stream", body = Object),
        (status = 400, description = "a malformed event id", body = ErrorBody),
        (status = 404, description = "no such view", body = ErrorBody),
    ))]
pub async fn changes(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<axum::response::Response, ApiError> {
    let view = view(&state, &name)?;
    if view.info.built_in {
        return Ok(super::view::changes(State(state), headers, Query(raw)).await?.into_response());
    }
    let after = super::view::last_event_id(&headers, raw)?;
    let (receiver, resume) = view.subscribe(after);
    let render = move |e: &ViewEvent| view_event(&view, e);
    Ok(super::view::event_stream(receiver, resume, render).into_response())
}

fn view_event(view: &PublishedView, e: &ViewEvent) -> Event {
    let op = match (&e.before, &e.after) {
        (None, _) => "insert",
        (Some(_), Some(_)) => "update",
        (Some(_), None) => "delete",
    };
    let key: serde_json::Map<String, serde_json::Value> =
        view.info.key.iter().zip(e.key.as_slice()).map(|(&c, v)| (view.info.columns[c].name.clone(), value_json(v))).collect();
    let row = |r: &Option<SharedRow>| r.as_ref().map_or(serde_json::Value::Null, |r| json(&RowJson { view, row: r }));
    let data = serde_json::json!({"version": e.version, "op": op, "key": key, "before": row(&e.before), "after": row(&e.after)});
    Event::default().event(op).id(format!("{}.{}", e.version, e.index)).json_data(data).unwrap_or_default()
}

/// The plan the view compiled to, as `cdcview explain` prints it: its
/// columns and types, its key, and its operators.
#[utoipa::path(get, path = "/views/{name}/plan", tag = "views",
    params(("name" = String, Path, description = "the view's name")),
    responses(
        (status = 200, description = "the plan", content_type = "text/plain", body = String),
        (status = 404, description = "no such view", body = ErrorBody),
    ))]
pub async fn plan(State(state): State<AppState>, Path(name): Path<String>) -> Result<String, ApiError> {
    Ok(view(&state, &name)?.info.explain.clone())
}

/// A row as a JSON object, its columns in the view's order.
struct RowJson<'a> {
    view: &'a PublishedView,
    row: &'a [Value],
}

impl Serialize for RowJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.row.len()))?;
        for (column, value) in self.view.info.columns.iter().zip(self.row) {
            map.serialize_entry(&column.name, &value_json(value))?;
        }
        map.end()
    }
}

/// Rows are maps of names to JSON values: writing them cannot fail.
fn json(rows: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(rows).unwrap_or_default()
}

/// A JSON body written straight from the rows, so that each object keeps
/// the view's column order.
fn json_body(rows: &impl Serialize) -> ([(header::HeaderName, &'static str); 1], Vec<u8>) {
    ([(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(rows).unwrap_or_default())
}

fn key_of(view: &PublishedView, text: &str, name: &str) -> Result<Row, ApiError> {
    let types: Vec<_> = view.info.key.iter().map(|&k| view.info.columns[k].ty).collect();
    parse_key(text, &types).map_err(|e| ApiError::bad(name, e))
}

/// The rows from `after` on, in key order, that `keep` accepts, at most
/// `limit`; and the version they were read at.
fn page(state: &AppState, view: &PublishedView, after: Option<Row>, limit: usize, keep: impl Fn(&[Value]) -> bool) -> (Vec<SharedRow>, u64) {
    if view.info.built_in {
        let shared = state.shared.view.read();
        let from = match after.as_deref() {
            Some([Value::Int(id)]) => Bound::Excluded(*id),
            _ => Bound::Unbounded,
        };
        let rows =
            shared.rows.range((from, Bound::Unbounded)).map(|(_, r)| view_row(r)).filter(|r| keep(r)).take(limit).map(SharedRow::from).collect();
        return (rows, shared.version);
    }
    let rows = view.rows.read();
    let from = after.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
    let page = rows.by_key.range::<[Value], _>((from, Bound::Unbounded)).map(|(_, r)| r).filter(|r| keep(r)).take(limit).cloned().collect();
    (page, rows.version)
}

fn version_header(version: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-view-version", version.into());
    h
}

/// Rows of a view by ascending key, from one view version. Besides `after`
/// and `limit`, every parameter names a column and keeps the rows whose
/// value is written exactly so (as in the row's JSON, without quotes).
#[utoipa::path(get, path = "/views/{name}", tag = "views",
    params(
        ("name" = String, Path, description = "the view's name"),
        ("after" = Option<String>, Query, description = "cursor: only keys after this one (the last row's key, its parts comma-separated; a part with a comma or a quote in double quotes)"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000", minimum = 1, maximum = 1000, example = 100),
    ),
    responses(
        (status = 200, description = "a page of rows, each an object of the view's columns", body = [Object],
            headers(("x-view-version" = u64, description = "the view version the page was read from"))),
        (status = 400, description = "a bad cursor, limit or column", body = ErrorBody),
        (status = 404, description = "no such view", body = ErrorBody),
    ))]
pub async fn rows(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let view = &*view(&state, &name)?;
    let columns: Vec<&str> = view.info.columns.iter().map(|c| c.name.as_str()).collect();
    let mut allowed = vec!["after", "limit"];
    allowed.extend(columns.iter().copied().filter(|c| !matches!(*c, "after" | "limit")));
    let filters: Vec<(usize, String)> = raw
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "after" | "limit"))
        .filter_map(|(k, v)| Some((columns.iter().position(|c| c == k)?, v.clone())))
        .collect();
    let p = Params::new(raw, &allowed)?;
    let limit = p.limit()? as usize;
    debug_assert!(limit <= MAX_LIMIT as usize);
    let after = p.text("after", 4096)?.map(|t| key_of(view, t, "after")).transpose()?;
    let keep = |row: &[Value]| filters.iter().all(|(c, want)| value_text(&row[*c]).as_deref() == Some(want.as_str()));
    let (rows, version) = page(&state, view, after, limit, keep);
    let body: Vec<RowJson> = rows.iter().map(|row| RowJson { view, row }).collect();
    Ok((version_header(version), json_body(&body)))
}

/// One row of a view, by its key (parts comma-separated, as in `after`).
#[utoipa::path(get, path = "/views/{name}/{key}", tag = "views",
    params(("name" = String, Path, description = "the view's name"), ("key" = String, Path, description = "the row's key, URL-encoded")),
    responses(
        (status = 200, description = "the row", body = Object),
        (status = 400, description = "not a key of this view", body = ErrorBody),
        (status = 404, description = "no such view, or no row with this key", body = ErrorBody),
    ))]
pub async fn one(State(state): State<AppState>, Path((name, key)): Path<(String, String)>) -> Result<impl IntoResponse, ApiError> {
    let view = &*view(&state, &name)?;
    let wanted = key_of(view, &key, "key")?;
    let (rows, version): (Vec<SharedRow>, u64) = if view.info.built_in {
        let shared = state.shared.view.read();
        let id = match wanted.as_slice() {
            [Value::Int(id)] => Some(*id),
            _ => None,
        };
        (id.and_then(|id| shared.rows.get(&id)).map(|r| view_row(r).into()).into_iter().collect(), shared.version)
    } else {
        let rows = view.rows.read();
        (rows.by_key.get(&wanted[..]).cloned().into_iter().collect(), rows.version)
    };
    let row = rows.into_iter().next().ok_or_else(|| ApiError::NotFound(format!("no row with key {} in {name}", key_text(&wanted))))?;
    Ok((version_header(version), json_body(&RowJson { view, row: &row })))
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::pipeline::Shared;

    async fn get(router: &axum::Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 22).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn revenue_router() -> (axum::Router, Vec<serde_json::Value>) {
        let (_, _, store) = crate::views::tests::revenue_views(2000);
        let view = store.get("revenue_by_city").unwrap();
        let all: Vec<serde_json::Value> = view.rows.read().by_key.values().map(|r| json(&RowJson { view: &view, row: r })).collect();
        (super::super::router(AppState::new(Shared::new(), None).with_views(store)), all)
    }

    #[tokio::test]
    async fn views_are_listed_with_their_columns_key_and_size() {
        let (router, all) = revenue_router();
        let (status, body) = get(&router, "/views").await;
        assert_eq!(status, StatusCode::OK);
        let names: Vec<&str> = body.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["order_details_mv", "revenue_by_city"]);
        let revenue = &body[1];
        assert_eq!(revenue["key"], serde_json::json!(["country", "city"]));
        assert_eq!(revenue["engine"], "sql");
        assert_eq!(revenue["rows"], all.len());
        assert_eq!(revenue["columns"][5], serde_json::json!({"name": "revenue", "type": "numeric(_,2)", "nullable": false}));
        assert_eq!(body[0]["engine"], "built-in");
    }

    #[tokio::test]
    async fn pages_by_key_cursor_filters_and_one_row_by_key() {
        let (router, all) = revenue_router();
        assert!(all.len() >= 4, "the workload spreads buyers over cities");
        // Pages of 3 by the cursor give back every row, in key order.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let uri = match &after {
                None => "/views/revenue_by_city?limit=3".to_string(),
                Some(a) => format!("/views/revenue_by_city?limit=3&after={}", urlencoding(a)),
            };
            let (status, page) = get(&router, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {page}");
            let rows = page.as_array().unwrap().clone();
            let Some(last) = rows.last() else { break };
            after = Some(key_text(&[Value::text(last["country"].as_str().unwrap()), Value::text(last["city"].as_str().unwrap())]));
            paged.extend(rows);
        }
        assert_eq!(paged, all);
        // An equality filter on a column.
        let country = all[0]["country"].as_str().unwrap();
        let (_, filtered) = get(&router, &format!("/views/revenue_by_city?country={}&limit=1000", urlencoding(country))).await;
        let expected: Vec<_> = all.iter().filter(|r| r["country"] == country).cloned().collect();
        assert_eq!(filtered.as_array().unwrap(), &expected);
        // One row by its key.
        let row = &all[all.len() / 2];
        let key = key_text(&[Value::text(row["country"].as_str().unwrap()), Value::text(row["city"].as_str().unwrap())]);
        let (status, one) = get(&router, &format!("/views/revenue_by_city/{}", urlencoding(&key))).await;
        assert_eq!((status, &one), (StatusCode::OK, row));
    }

    #[tokio::test]
    async fn unknown_views_keys_and_parameters_are_clear_errors() {
        let (router, _) = revenue_router();
        let (status, body) = get(&router, "/views/nope").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, body) = get(&router, "/views/revenue_by_city/Atlantis,Nowhere").await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
        let (status, body) = get(&router, "/views/revenue_by_city?after=onlyone").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].as_str().unwrap().contains("expected 2 comma-separated key parts"), "{body}");
        let (status, body) = get(&router, "/views/revenue_by_city?town=Paris").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["error"]["message"].as_str().unwrap().contains("accepted: after, limit, country, city"), "{body}");
        let (status, _) = get(&router, "/views/order_details_mv/abc").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = get(&router, "/views/order_details_mv/12").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    fn post(uri: &str, body: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut request = Request::post(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(Body::from(body.to_string())).unwrap()
    }

    async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, serde_json::Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    /// A router whose pipeline end adds every posted view as an empty one.
    fn admin_router(token: Option<&str>) -> axum::Router {
        let (_, _, store) = crate::views::tests::revenue_views(0);
        let (tx, rx) = std::sync::mpsc::channel::<ViewCommand>();
        let pipeline_store = Arc::clone(&store);
        std::thread::spawn(move || {
            for command in rx {
                if let ViewCommand::Add { sql, reply } = command {
                    let name = sql.split_whitespace().nth(3).unwrap().to_string();
                    let mut info = pipeline_store.get("revenue_by_city").unwrap().info.clone();
                    info.name = name;
                    pipeline_store.add(Arc::new(PublishedView::new(info.clone())));
                    let _ = reply.send(Ok(info));
                }
            }
        });
        let state = AppState::new(Shared::new(), None).with_views(store).with_admin(Some(Admin::new(token.map(str::to_string), tx)));
        super::super::router(state)
    }

    #[tokio::test]
    async fn changing_views_needs_the_token_or_a_loopback_client() {
        let sql = "CREATE MATERIALIZED VIEW posted AS SELECT 1";
        let sql_type = ("content-type", "application/sql");
        // Runtime views off.
        let (router, _) = revenue_router();
        let (status, body) = send(&router, post("/views", sql, &[sql_type])).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")));
        // With a token: none, a wrong one, then the right one.
        let router = admin_router(Some("s3cret"));
        assert_eq!(send(&router, post("/views", sql, &[sql_type])).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(&router, post("/views", sql, &[sql_type, ("authorization", "Bearer nope")])).await.0, StatusCode::FORBIDDEN);
        let (status, body) = send(&router, post("/views", sql, &[("content-type", "application/json"), ("authorization", "Bearer s3cret")])).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("unsupported_media_type")));
        let (status, body) = send(&router, post("/views", sql, &[sql_type, ("authorization", "Bearer s3cret")])).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["name"], "posted");
        // Without a token: loopback clients only.
        let router = admin_router(None);
        assert_eq!(send(&router, post("/views", sql, &[sql_type])).await.0, StatusCode::FORBIDDEN, "no peer address: not known to be local");
        let local = router.clone().layer(axum::extract::connect_info::MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5555))));
        assert_eq!(send(&local, post("/views", sql, &[sql_type])).await.0, StatusCode::CREATED);
        let remote = router.layer(axum::extract::connect_info::MockConnectInfo(SocketAddr::from(([10, 0, 0, 7], 5555))));
        assert_eq!(send(&remote, post("/views", sql, &[sql_type])).await.0, StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_views_change_stream_sends_each_changed_row_and_resumes_after_an_id() {
        use futures::StreamExt;
        let (_, _, store) = crate::views::tests::revenue_views(0);
        let view = store.get("revenue_by_city").unwrap();
        let router = super::super::router(AppState::new(Shared::new(), None).with_views(Arc::clone(&store)));
        let key = vec![Value::text("XX"), Value::text("Test, City")];
        let row = |orders: i64| {
            let mut row = key.clone();
            row.extend([Value::Int(orders), Value::Int(1), Value::Int(0), Value::Decimal("0.00".parse().unwrap()), Value::Null]);
            row
        };
        view.apply(vec![cdcview_engine::RowChange { key: key.clone().into(), before: None, after: Some(row(1).into()) }]);
        let v1 = view.rows.read().version;
        view.apply(vec![cdcview_engine::RowChange { key: key.clone().into(), before: Some(row(1).into()), after: Some(row(2).into()) }]);
        let request = Request::get("/views/revenue_by_city/changes").header("last-event-id", v1.to_string()).body(Body::empty()).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(2), body.next()).await.expect("an event").unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(text.contains("event: update"), "{text}");
        assert!(text.contains(&format!("id: {}.0", v1 + 1)), "{text}");
        let data: serde_json::Value = serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
        assert_eq!(data["key"], serde_json::json!({"country": "XX", "city": "Test, City"}));
        assert_eq!((data["before"]["orders"].as_i64(), data["after"]["orders"].as_i64()), (Some(1), Some(2)));
        let (status, _) = get(&router, "/views/nope/changes").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let response = router.clone().oneshot(Request::get("/views/revenue_by_city/plan").body(Body::empty()).unwrap()).await.unwrap();
        let plan = String::from_utf8(to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
        assert!(plan.starts_with("revenue_by_city (materialized view)") && plan.contains("key: country, city") && plan.contains("Reduce"), "{plan}");
    }

    fn urlencoding(text: &str) -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}
