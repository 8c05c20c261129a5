//! The state the pipeline shares with the API: the served view, versioned per
//! batch, and the pipeline's health.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::engine::{DeltaKind, OrderDetails, ViewDelta};
use crate::source::PartitionProgress;

/// The view as the API serves it. Every batch of deltas is applied under one
/// write lock, so a reader always sees exactly one version.
#[derive(Default)]
pub struct ViewState {
    pub rows: BTreeMap<i64, Arc<OrderDetails>>,
    /// Increases by one with every batch that changed the view.
    pub version: u64,
    /// Time of the newest source record applied (Kafka timestamp), in ms.
    pub source_time_ms: Option<i64>,
}

/// One view change, as sent on the change stream.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeEvent {
    pub version: u64,
    pub op: DeltaKind,
    pub order_id: i64,
    #[schema(value_type = Option<OrderDetails>)]
    pub before: Option<Arc<OrderDetails>>,
    #[schema(value_type = Option<OrderDetails>)]
    pub after: Option<Arc<OrderDetails>>,
}

/// The sink's health, as reported by `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkState {
    /// `disabled`, `starting`, `ok` or `degraded`.
    pub state: &'static str,
    pub last_error: Option<String>,
    pub rows_written: u64,
    pub pending_rows: usize,
    pub last_flush_ms: Option<i64>,
}

/// Pipeline health, as reported by `/status` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineStatus {
    pub partitions: Vec<PartitionProgress>,
    pub source_error: Option<String>,
    pub sink: SinkState,
    /// MySQL transactions being assembled from Debezium's metadata.
    pub transactions: super::TxStats,
}

pub struct Shared {
    pub view: RwLock<ViewState>,
    status: Mutex<PipelineStatus>,
    /// False until the view has caught up with the topics as they were at start.
    ready: watch::Sender<bool>,
    pub changes_applied: AtomicU64,
    pub decode_errors: AtomicU64,
    pub last_applied_ms: AtomicU64,
    pub changes: broadcast::Sender<Arc<ChangeEvent>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            view: RwLock::default(),
            status: Mutex::default(),
            ready: watch::channel(false).0,
            changes_applied: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            last_applied_ms: AtomicU64::new(0),
            changes: broadcast::channel(4096).0,
        }
    }
}

impl Shared {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Applies one batch's deltas to the served view as one new version.
    pub fn publish(&self, deltas: &[ViewDelta<OrderDetails>], applied: usize, decode_errors: usize, newest_ms: Option<i64>) {
        self.changes_applied.fetch_add(applied as u64, Ordering::Relaxed);
        self.decode_errors.fetch_add(decode_errors as u64, Ordering::Relaxed);
        self.last_applied_ms.store(now_ms() as u64, Ordering::Relaxed);
        let mut view = self.view.write();
        view.source_time_ms = view.source_time_ms.max(newest_ms);
        if deltas.is_empty() {
            return;
        }
        view.version += 1;
        let version = view.version;
        for d in deltas {
            match &d.after {
                Some(row) => view.rows.insert(d.key, Arc::clone(row)),
                None => view.rows.remove(&d.key),
            };
        }
        drop(view);
        if self.changes.receiver_count() > 0 {
            for d in deltas {
                let event = ChangeEvent { version, op: d.kind(), order_id: d.key, before: d.before.clone(), after: d.after.clone() };
                let _ = self.changes.send(Arc::new(event));
            }
        }
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    pub fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Follows readiness, for tasks that must wait for it (the sink).
    pub fn watch_ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    pub fn status(&self) -> PipelineStatus {
        self.status.lock().clone()
    }

    pub fn set_partitions(&self, partitions: &[PartitionProgress]) {
        let mut s = self.status.lock();
        s.partitions.clear();
        s.partitions.extend_from_slice(partitions);
    }

    pub fn set_transactions(&self, stats: super::TxStats) {
        self.status.lock().transactions = stats;
    }

    pub fn set_source_error(&self, error: Option<String>) {
        self.status.lock().source_error = error;
    }

    pub fn update_sink(&self, f: impl FnOnce(&mut SinkState)) {
        f(&mut self.status.lock().sink);
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
