//! The HTTP API: the materialized view from memory, its change stream, the
//! raw tables and the naive query from MySQL, and operational endpoints.

mod error;
mod mysql;
mod ops;
mod params;
mod view;

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use mysql::{pool as mysql_pool, ORDER_DETAILS_SQL, SESSION_INIT};

use crate::pipeline::Shared;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    /// The shop database, for the raw and naive endpoints; absent when not configured.
    pub mysql: Option<mysql_async::Pool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/order_details_mv", get(view::list))
        .route("/order_details_mv/changes", get(view::changes))
        .route("/order_details_mv/{order_id}", get(view::one))
        .route("/order_details", get(mysql::order_details))
        .route("/users", get(mysql::users))
        .route("/addresses", get(mysql::addresses))
        .route("/orders", get(mysql::orders))
        .route("/order_items", get(mysql::order_items))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/status", get(ops::status))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
