//! The HTTP API: the materialized view from memory, its change stream, the
//! raw tables and the naive query from MySQL, and operational endpoints.
//! `GET /openapi.json` is generated from the handlers' annotations.

mod error;
mod metrics;
mod mysql;
mod ops;
mod params;
mod view;

use std::future::Future;
use std::sync::Arc;

use axum::{Extension, Json, Router};
use tokio::net::TcpListener;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use mysql::{pool as mysql_pool, ORDER_DETAILS_SQL, SESSION_INIT};

use crate::pipeline::Shared;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    /// The shop database, for the raw and naive endpoints; absent when not configured.
    pub mysql: Option<mysql_async::Pool>,
    http: Arc<metrics::HttpMetrics>,
}

impl AppState {
    pub fn new(shared: Arc<Shared>, mysql: Option<mysql_async::Pool>) -> Self {
        AppState { shared, mysql, http: Arc::default() }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "cdcview", description = "A CDC-driven materialized view of order details, kept exact as MySQL changes."),
    tags(
        (name = "view", description = "order_details_mv, served from memory"),
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
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
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
                "/users"
            ]
        );
        let params: Vec<&str> = paths["/order_details_mv"]["get"]["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
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
}
