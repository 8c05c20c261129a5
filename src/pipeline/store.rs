//! The state the pipeline shares with the API: the served view, versioned per
//! batch, and the pipeline's health.

use std::collections::{BTreeMap, VecDeque};
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
    /// Increases by one with every batch that changed the view. It starts at
    /// the process's start time in microseconds, so versions keep increasing
    /// across restarts and a change-stream position from an earlier run is
    /// never mistaken for one of this run.
    pub version: u64,
    /// Time of the newest source record applied (Kafka timestamp), in ms.
    pub source_time_ms: Option<i64>,
}

/// One view change, as sent on the change stream.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ChangeEvent {
    pub version: u64,
    /// The event's place among its version's events; with the version, its
    /// SSE id (`version.index`).
    #[serde(skip)]
    pub index: u32,
    pub op: DeltaKind,
    pub order_id: i64,
    #[schema(value_type = Option<OrderDetails>)]
    pub before: Option<Arc<OrderDetails>>,
    #[schema(value_type = Option<OrderDetails>)]
    pub after: Option<Arc<OrderDetails>>,
}

impl ChangeEvent {
    pub fn position(&self) -> StreamPos {
        (self.version, self.index)
    }
}

/// An event of a change stream, with its place in it.
pub trait Positioned {
    fn position(&self) -> StreamPos;
}

impl Positioned for ChangeEvent {
    fn position(&self) -> StreamPos {
        ChangeEvent::position(self)
    }
}

/// A place in the change stream: a view version and an event's index within
/// it. `(v, u32::MAX)` stands for the end of version `v`.
pub type StreamPos = (u64, u32);

/// How many change events the change log keeps by default.
pub const CHANGE_LOG_EVENTS: usize = 100_000;

/// The newest change events, so that a change-stream client that reconnects
/// with `Last-Event-ID` receives exactly what it missed.
pub struct ChangeLog<E = ChangeEvent> {
    events: VecDeque<Arc<E>>,
    capacity: usize,
    /// Versions up to this one were never in the log (they precede the run).
    origin: u64,
    /// The newest event dropped from the log to keep it bounded.
    evicted: Option<StreamPos>,
}

/// What a reconnecting client gets.
pub enum Resume<E = ChangeEvent> {
    /// Every event after its position, in order (maybe none yet).
    Missed(Vec<Arc<E>>),
    /// Its position is older than the log (or not of this run): it must
    /// re-read the view; events after `version` follow.
    Reset { version: u64 },
}

impl<E: Positioned> ChangeLog<E> {
    pub fn new(origin: u64, capacity: usize) -> Self {
        ChangeLog { events: VecDeque::new(), capacity: capacity.max(1), origin, evicted: None }
    }

    pub fn push(&mut self, event: Arc<E>) {
        self.events.push_back(event);
        self.shrink();
    }

    pub fn resize(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        self.shrink();
    }

    fn shrink(&mut self) {
        while self.events.len() > self.capacity {
            self.evicted = self.events.pop_front().map(|e| e.position());
        }
    }

    /// The events after `after`, or a reset when some of them are gone.
    /// `current` is the newest version published.
    pub fn since(&self, after: StreamPos, current: u64) -> Resume<E> {
        let covered = match self.evicted {
            Some(evicted) => after >= evicted,
            None => after.0 >= self.origin,
        };
        if !covered || after.0 > current {
            return Resume::Reset { version: current };
        }
        let start = self.events.partition_point(|e| e.position() <= after);
        Resume::Missed(self.events.range(start..).cloned().collect())
    }
}

/// The sink's health, as reported by `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkState {
    /// `disabled`, `starting`, `ok` or `degraded`.
    pub state: &'static str,
    pub last_error: Option<String>,
    pub rows_written: u64,
    /// Times the table was replaced whole from the view since this start:
    /// on a first start, or when the table was behind a restored snapshot.
    /// A restart after a graceful stop leaves it at 0.
    pub table_rewrites: u64,
    pub pending_rows: usize,
    pub last_flush_ms: Option<i64>,
}

/// What the state snapshots did, as reported by `/status`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotState {
    /// Where each partition resumed when this run started from a snapshot;
    /// `None` when it replayed the topics from the beginning.
    pub restored_from: Option<Vec<super::Position>>,
    /// The view version the newest snapshot of this run holds, and when it
    /// was saved (unix ms).
    pub saved_version: Option<u64>,
    pub saved_ms: Option<i64>,
    /// How long the pipeline stopped to start the last snapshot (a child
    /// process writes it), and the longest such stop of this run, in µs.
    pub last_pause_us: Option<u64>,
    pub max_pause_us: Option<u64>,
}

/// Pipeline health, as reported by `/status` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PipelineStatus {
    pub snapshot: SnapshotState,
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
    /// Records that could not be decoded for a transient reason (the schema
    /// registry down) and were read again later; never dead letters.
    pub transient_errors: AtomicU64,
    pub last_applied_ms: AtomicU64,
    pub changes: broadcast::Sender<Arc<ChangeEvent>>,
    /// Recent events; held while an event is sent, so that a subscriber
    /// that reads the log and subscribes under it misses nothing.
    change_log: Mutex<ChangeLog>,
    /// Where changes spend their time on the way to the API.
    pub stages: super::Stages,
}

impl Default for Shared {
    fn default() -> Self {
        let origin = now_micros();
        Shared {
            view: RwLock::new(ViewState { version: origin, ..ViewState::default() }),
            change_log: Mutex::new(ChangeLog::new(origin, CHANGE_LOG_EVENTS)),
            status: Mutex::default(),
            ready: watch::channel(false).0,
            changes_applied: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            transient_errors: AtomicU64::new(0),
            last_applied_ms: AtomicU64::new(0),
            changes: broadcast::channel(4096).0,
            stages: super::Stages::default(),
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
        let mut log = self.change_log.lock();
        for (index, d) in deltas.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX - 1);
            let event = Arc::new(ChangeEvent { version, index, op: d.kind(), order_id: d.key, before: d.before.clone(), after: d.after.clone() });
            log.push(Arc::clone(&event));
            let _ = self.changes.send(event);
        }
    }

    /// Keeps the newest `events` change events for reconnecting clients.
    pub fn set_change_log_capacity(&self, events: usize) {
        self.change_log.lock().resize(events);
    }

    /// Subscribes to the change stream; with `after`, also returns what the
    /// client missed since then (or that it must re-read the view).
    pub fn subscribe_changes(&self, after: Option<StreamPos>) -> (broadcast::Receiver<Arc<ChangeEvent>>, Option<Resume>) {
        let log = self.change_log.lock();
        let receiver = self.changes.subscribe();
        let current = self.view.read().version;
        (receiver, after.map(|after| log.since(after, current)))
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

    pub fn update_snapshot(&self, f: impl FnOnce(&mut SnapshotState)) {
        f(&mut self.status.lock().snapshot);
    }

    /// Records how long starting a snapshot stopped the pipeline.
    pub fn snapshot_pause(&self, us: u64) {
        self.update_snapshot(|s| (s.last_pause_us, s.max_pause_us) = (Some(us), Some(s.max_pause_us.unwrap_or(0).max(us))));
    }

    pub fn update_sink(&self, f: impl FnOnce(&mut SinkState)) {
        f(&mut self.status.lock().sink);
    }
}

pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
