//! `cdcview serve`: wires source, engine, sink and API together.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::api::Admin;
use crate::api::{self, AppState};
use crate::config::ServeConfig;
use crate::pipeline::{self, Shared};
use crate::views::{Declared, Limits, PostedViews, RuntimeViews, SqlViews, ViewStore};

/// How long a graceful stop waits for open HTTP requests to finish.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}: is another cdcview running? choose another with --listen or CDCVIEW_LISTEN", cfg.listen))?;
    let mysql = cfg.mysql_url.as_deref().map(api::mysql_pool).transpose().context("CDCVIEW_MYSQL_URL is not a valid mysql:// URL")?;
    let (store, views, admin) = load_views(&cfg)?;
    let shared = Shared::new();
    shared.set_change_log_capacity(cfg.change_log_events);
    let stop = Arc::new(AtomicBool::new(false));

    let (sink_tx, sink_task) = match cfg.pg_url.clone() {
        Some(url) => {
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(crate::sink::run(url, rx, Arc::clone(&shared), shared.watch_ready(), Arc::clone(&store)));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    if sink_tx.is_none() {
        shared.update_sink(|s| s.state = "disabled");
        tracing::info!("no CDCVIEW_PG_URL: the PostgreSQL sink is off");
    }
    let pipeline = {
        let (shared, stop, cfg) = (Arc::clone(&shared), Arc::clone(&stop), cfg.pipeline());
        std::thread::Builder::new().name("pipeline".into()).spawn(move || pipeline::run(cfg, shared, sink_tx, stop, views))?
    };

    tracing::info!(listen = %cfg.listen, brokers = %cfg.brokers, "serving order_details_mv");
    let router = api::router(AppState::new(shared, mysql).with_views(store).with_admin(admin));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut http = tokio::spawn(api::serve(listener, router, async {
        let _ = http_stopped.await;
    }));
    tokio::select! {
        ended = &mut http => ended.context("HTTP server task failed")?.context("HTTP server failed")?,
        () = shutdown_signal() => {
            let _ = stop_http.send(());
            // Change-stream clients keep their connections open: give open
            // requests a moment, then go on, so that the pipeline and the
            // sink still get to save and flush within the stop timeout.
            match tokio::time::timeout(HTTP_DRAIN, &mut http).await {
                Ok(ended) => ended.context("HTTP server task failed")?.context("HTTP server failed")?,
                Err(_) => {
                    tracing::info!(waited_secs = HTTP_DRAIN.as_secs(), "HTTP connections still open (change streams); closing them");
                    http.abort();
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    // The pipeline saves its last snapshot and drops the sink's channel as it ends.
    let _ = tokio::task::spawn_blocking(move || pipeline.join()).await;
    if let Some(task) = sink_task {
        wait_for_sink(task, cfg.shutdown_timeout()).await;
    }
    Ok(())
}

/// The declared views (`--views`) and those posted in earlier runs, the
/// SQL-maintained ones' dataflow, and where the API sends view changes
/// (with `--runtime-views`).
fn load_views(cfg: &ServeConfig) -> anyhow::Result<(Arc<ViewStore>, Option<SqlViews>, Option<Admin>)> {
    let paths = cfg.view_paths();
    if paths.is_empty() && !cfg.runtime_views {
        tracing::info!(folder = crate::config::DEFAULT_VIEWS, "no view declarations folder; serving order_details_mv only");
        return Ok((Arc::default(), None, None));
    }
    let shown = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let posted = if cfg.runtime_views {
        PostedViews::load(cfg.state_dir.clone()).context("reading the views posted in earlier runs")?
    } else {
        PostedViews::default()
    };
    let declared =
        Declared::load_with_posted(paths, posted.views()).with_context(|| format!("loading the view declarations in {shown} (CDCVIEW_VIEWS)"))?;
    let store = Arc::new(ViewStore::new(&declared.served));
    let (runtime, admin) = if cfg.runtime_views {
        let (tx, rx) = std::sync::mpsc::channel();
        let limits = Limits { views: cfg.max_posted_views, rows: cfg.max_view_rows, statement_bytes: 64 * 1024 };
        (Some(RuntimeViews { posted, limits, commands: rx }), Some(Admin::new(cfg.admin_token.clone(), tx)))
    } else {
        (None, None)
    };
    let views = SqlViews::new(&declared, &cfg.topics(), Arc::clone(&store), runtime)
        .with_context(|| format!("binding the views of {shown} to the topics"))?;
    for v in &declared.served {
        tracing::info!(view = %v.name, engine = if v.built_in { "built-in" } else { "sql" }, posted = v.posted, columns = v.columns.len(), "serving view");
    }
    Ok((store, views, admin))
}

/// Waits, up to `limit`, for the sink to write what it still holds with its
/// offsets: cut off, the table would stay behind the snapshot just saved and
/// the next start would rewrite all of it.
async fn wait_for_sink(task: tokio::task::JoinHandle<()>, limit: std::time::Duration) {
    tracing::info!(limit_secs = limit.as_secs_f64(), "waiting for the PostgreSQL sink to write what it holds");
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(())) => tracing::info!("the PostgreSQL sink has written everything; stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "the PostgreSQL sink task failed"),
        Err(_) => tracing::warn!(
            limit_secs = limit.as_secs_f64(),
            "the PostgreSQL sink did not finish writing in time (is PostgreSQL down?); the next start rewrites the table from the view"
        ),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
