//! The HTTP API: the materialized view from memory, its change stream, the
//! raw tables and the naive query from MySQL, and operational endpoints.
//! `GET /openapi.json` is generated from the handlers' annotations.

mod error;
mod metrics;
mod mysql;
mod ops;
mod params;
mod view;
mod views;

use std::future::Future;
use std::sync::Arc;

use axum::{Extension, Json, Router};
use tokio::net::TcpListener;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use mysql::{pool as mysql_pool, ORDER_DETAILS_SQL, SESSION_INIT};
pub use views::Admin;

use crate::pipeline::Shared;
use crate::views::ViewStore;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    /// The shop database, for the raw and naive endpoints; absent when not configured.
    pub mysql: Option<mysql_async::Pool>,
    /// The views declared in SQL, served under `/views`.
    pub views: Arc<ViewStore>,
    /// Adding and dropping views while running; `None` when that is off.
    pub admin: Option<Admin>,
    http: Arc<metrics::HttpMetrics>,
}

impl AppState {
    pub fn new(shared: Arc<Shared>, mysql: Option<mysql_async::Pool>) -> Self {
        AppState { shared, mysql, views: Arc::default(), admin: None, http: Arc::default() }
    }

    pub fn with_admin(self, admin: Option<Admin>) -> Self {
        AppState { admin, ..self }
    }

    pub fn with_views(self, views: Arc<ViewStore>) -> Self {
        AppState { views, ..self }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "cdcview", description = "A CDC-driven materialized view of order details, kept exact as MySQL changes."),
    tags(
        (name = "view", description = "order_details_mv, served from memory"),
        (name = "views", description = "every materialized view declared in SQL (views/*.sql), served from memory"),
        (name = "naive", description = "the same view computed in MySQL at read time"),
        (name = "raw", description = "the source tables, read from MySQL"),
        (name = "ops", description = "health, readiness, status, metrics"),
    )
)]
struct ApiDoc;

pub fn router(state: AppState) -> Router {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(view::list))
        .routes(routes!(view::changes))
        .routes(routes!(view::one))
        .routes(routes!(views::list, views::add))
        .routes(routes!(views::rows, views::remove))
        .routes(routes!(views::changes))
        .routes(routes!(views::plan))
        .routes(routes!(views::one))
        .routes(routes!(mysql::order_details))
        .routes(routes!(mysql::users))
        .routes(routes!(mysql::addresses))
        .routes(routes!(mysql::orders))
        .routes(routes!(mysql::order_items))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::status))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi_json))
        .split_for_parts();
    router
        .layer(Extension(Arc::new(api)))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "the OpenAPI 3.1 description of this API", body = Object)))]
async fn openapi_json(Extension(api): Extension<Arc<utoipa::openapi::OpenApi>>) -> Json<utoipa::openapi::OpenApi> {
    Json(api.as_ref().clone())
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    // The peer's address decides who may change the views without a token.
    axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
        let response = router.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn test_router() -> Router {
        router(AppState::new(Shared::new(), None))
    }

    #[tokio::test]
    async fn openapi_describes_every_endpoint_with_its_parameters() {
        let (status, body) = get(&test_router(), "/openapi.json").await;
        assert_eq!(status, StatusCode::OK);
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "/addresses",
                "/healthz",
                "/metrics",
                "/openapi.json",
                "/order_details",
                "/order_details_mv",
                "/order_details_mv/changes",
                "/order_details_mv/{order_id}",
                "/order_items",
                "/orders",
                "/readyz",
                "/status",
                "/users",
                "/views",
                "/views/{name}",
                "/views/{name}/changes",
                "/views/{name}/plan",
                "/views/{name}/{key}"
            ]
        );
        let params: Vec<&str> =
            paths["/order_details_mv"]["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(params, ["user_id", "status", "after", "limit"]);
        let row = &doc["components"]["schemas"]["OrderDetails"]["properties"];
        assert_eq!(row["total"]["type"], "string", "money is an exact decimal string");
        assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    }

    #[tokio::test]
    async fn metrics_time_requests_by_route_template() {
        let router = test_router();
        assert_eq!(get(&router, "/order_details_mv/12345").await.0, StatusCode::NOT_FOUND);
        assert_eq!(get(&router, "/order_details_mv?limit=0").await.0, StatusCode::BAD_REQUEST);
        let (_, metrics) = get(&router, "/metrics").await;
        assert!(
            metrics.contains(r#"cdcview_http_request_duration_seconds_count{method="GET",route="/order_details_mv/{order_id}",status="404"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains(r#"route="/order_details_mv",status="400"} 1"#), "{metrics}");
        assert!(!metrics.contains("12345"), "raw paths must not become labels");
    }

    #[tokio::test]
    async fn readyz_is_503_until_the_view_has_caught_up() {
        let state = AppState::new(Shared::new(), None);
        let router = router(state.clone());
        let (status, body) = get(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains(r#""code":"not_ready""#), "{body}");
        state.shared.set_ready();
        assert_eq!(get(&router, "/readyz").await.0, StatusCode::OK);
    }

    fn row(order_id: i64) -> Arc<crate::engine::OrderDetails> {
        Arc::new(crate::engine::OrderDetails {
            order_id,
            user_id: 1,
            total: rust_decimal::Decimal::new(100, 2),
            order_date: None,
            user_name: "Ann".into(),
            user_email: "ann@example.com".into(),
            user_phone: None,
            full_address: None,
            order_items_details: None,
            item_count: 0,
            items_total: rust_decimal::Decimal::new(0, 2),
            order_status: None,
            last_order_update: None,
        })
    }

    /// Publishes one version that inserts `orders`; returns its version.
    fn publish_inserts(shared: &Shared, orders: &[i64]) -> u64 {
        let deltas: Vec<_> = orders.iter().map(|&id| crate::engine::ViewDelta { key: id, before: None, after: Some(row(id)) }).collect();
        shared.publish(&deltas, deltas.len(), 0, None);
        shared.view.read().version
    }

    /// The first `count` events of an SSE response: (event, id, order_id or data).
    async fn sse_events(router: &Router, uri: &str, last_event_id: Option<&str>, count: usize) -> (StatusCode, Vec<(String, String, String)>) {
        use futures::StreamExt;
        let mut request = Request::get(uri);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let mut body = response.into_body().into_data_stream();
        let mut text = String::new();
        let mut events = Vec::new();
        while events.len() < count {
            let Ok(Some(Ok(chunk))) = tokio::time::timeout(std::time::Duration::from_secs(2), body.next()).await else { break };
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().to_string();
                let data = field("data: ");
                let shown =
                    serde_json::from_str::<serde_json::Value>(&data).ok().and_then(|d| d["order_id"].as_i64()).map_or(data, |id| id.to_string());
                if !field("event: ").is_empty() {
                    events.push((field("event: "), field("id: "), shown));
                }
            }
        }
        (status, events)
    }

    #[tokio::test]
    async fn a_reconnecting_change_stream_client_gets_exactly_what_it_missed() {
        let state = AppState::new(Shared::new(), None);
        let router = router(state.clone());
        let shared = &state.shared;
        let v1 = publish_inserts(shared, &[1, 2]);
        let v2 = publish_inserts(shared, &[3]);
        let v3 = publish_inserts(shared, &[4, 5]);
        let uri = "/order_details_mv/changes";
        // After the first event of v1: the rest of v1, then v2 and v3.
        let (status, events) = sse_events(&router, uri, Some(&format!("{v1}.0")), 4).await;
        assert_eq!(status, StatusCode::OK);
        let got: Vec<(&str, String, &str)> = events.iter().map(|(e, id, d)| (e.as_str(), id.clone(), d.as_str())).collect();
        assert_eq!(
            got,
            [
                ("insert", format!("{v1}.1"), "2"),
                ("insert", format!("{v2}.0"), "3"),
                ("insert", format!("{v3}.0"), "4"),
                ("insert", format!("{v3}.1"), "5")
            ]
        );
        // A bare version means all of its events were received.
        let (_, events) = sse_events(&router, &format!("{uri}?last_event_id={v2}"), None, 2).await;
        assert_eq!(events.iter().map(|(_, id, _)| id.clone()).collect::<Vec<_>>(), [format!("{v3}.0"), format!("{v3}.1")]);
        // Up to date: nothing missed, the next version arrives live.
        let live = {
            let router = router.clone();
            tokio::spawn(async move { sse_events(&router, uri, Some(&format!("{v3}.1")), 1).await.1 })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let v4 = publish_inserts(shared, &[6]);
        assert_eq!(live.await.unwrap(), [("insert".to_string(), format!("{v4}.0"), "6".to_string())]);
        // An id from before this run, or one no longer kept: a reset naming the current version.
        let (_, events) = sse_events(&router, uri, Some("12.0"), 1).await;
        assert_eq!(events[0].0, "reset");
        assert_eq!(events[0].1, v4.to_string());
        shared.set_change_log_capacity(2);
        let v5 = publish_inserts(shared, &[7, 8, 9]);
        let (_, events) = sse_events(&router, uri, Some(&v4.to_string()), 1).await;
        assert_eq!((events[0].0.as_str(), events[0].1.as_str()), ("reset", v5.to_string().as_str()), "v5.0 was dropped from the log");
        let (_, events) = sse_events(&router, uri, Some(&format!("{v5}.0")), 2).await;
        assert_eq!(
            events.iter().map(|(_, id, _)| id.clone()).collect::<Vec<_>>(),
            [format!("{v5}.1"), format!("{v5}.2")],
            "the log still holds these"
        );
        let (status, _) = sse_events(&router, uri, Some("seven"), 0).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
}
