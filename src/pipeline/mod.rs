//! The pipeline: Kafka records are decoded, applied to the engine in batches,
//! and each batch's deltas are published at once to the view the API serves,
//! to the change stream, and to the PostgreSQL sink.

mod snapshot;
mod stages;
mod store;
mod transactions;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use snapshot::{Covered, Position, Snapshots};
pub use stages::{Stages, BOUNDS as STAGE_BOUNDS};
pub use store::{
    now_micros, now_ms, ChangeEvent, ChangeLog, PipelineStatus, Positioned, Resume, Shared, SinkState, StreamPos, ViewState, CHANGE_LOG_EVENTS,
};
pub use transactions::{TxAssembler, TxStats};

use crate::change::{Change, SourcePos};
use crate::decode::{self, Boundary, Decoded, Input, TxId};
use crate::engine::{IncrementalView, OrderDetailsView};
use crate::error::DecodeError;
use crate::sink::SinkBatch;
use crate::source::{KafkaSource, Record};
use crate::views::{SqlViews, ViewCommand, ViewsState};

/// What the pipeline reads and how.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub brokers: String,
    /// Topic name and the input it feeds.
    pub topics: Vec<(String, Input)>,
    pub format: decode::Format,
    pub schema_registry: Option<String>,
    /// The most records applied as one batch (one view version).
    pub max_batch: usize,
    /// How long a poll waits for the first record of a batch.
    pub poll_wait: Duration,
    /// The consumer's `fetch.wait.max.ms`.
    pub fetch_wait: Duration,
    /// Where state snapshots live; `None` replays the topics on every start.
    pub state_dir: Option<std::path::PathBuf>,
    pub snapshot_every: Duration,
    /// How long an incomplete transaction may hold its changes back.
    pub transaction_timeout: Duration,
}

/// What turns a polled batch into engine changes: the decoder, which topic
/// feeds which input, and the transaction assembler.
struct Intake {
    decoder: decode::Decoder,
    inputs: HashMap<Arc<str>, Input>,
    transactions: TxAssembler,
    /// Whether a transaction topic is read; without one, transaction ids on
    /// changes are ignored (no END would ever release them).
    track_transactions: bool,
}

impl Intake {
    fn new(cfg: &PipelineConfig) -> Self {
        let tables = cfg.topics.iter().filter(|(_, i)| !matches!(i, Input::OrderUpdates | Input::Transactions)).map(|(_, i)| i.name().to_string());
        Intake {
            decoder: decode::Decoder::new(cfg.format, cfg.schema_registry.clone()),
            inputs: cfg.topics.iter().map(|(t, i)| (Arc::from(t.as_str()), *i)).collect(),
            transactions: TxAssembler::new(tables, cfg.transaction_timeout),
            track_transactions: cfg.topics.iter().any(|(_, i)| *i == Input::Transactions),
        }
    }

    /// True when held changes may need releasing even without new records.
    fn waiting(&self) -> bool {
        let stats = self.transactions.stats();
        stats.held_changes > 0 || stats.open_transactions > 0
    }
}

/// Runs the pipeline on the calling thread until `stop` is set.
/// `views` are the SQL-defined views, maintained batch by batch with the
/// built-in view and saved in the same snapshots.
pub fn run(
    cfg: PipelineConfig,
    shared: Arc<Shared>,
    sink: Option<mpsc::UnboundedSender<SinkBatch>>,
    stop: Arc<AtomicBool>,
    mut views: Option<SqlViews>,
) {
    let topic_names: Vec<String> = cfg.topics.iter().map(|(t, _)| t.clone()).collect();
    let mut intake = Intake::new(&cfg);
    let snapshots = cfg.state_dir.clone().and_then(|dir| {
        Snapshots::new(dir.clone())
            .inspect_err(|e| tracing::warn!(error = %e, dir = %dir.display(), "cannot use the state folder; snapshots are off"))
            .ok()
    });
    // A restore frees its buffers once: hand their pages back.
    crate::memory::hand_back_freed();
    let Some((mut engine, mut source, released)) = start(&cfg, &topic_names, snapshots.as_ref(), &shared, sink.as_ref(), &stop, views.as_mut())
    else {
        return;
    };
    intake.transactions.remember_released(released.into_iter().map(TxId::from));
    // From here on the view replaces rows all the time: reuse their pages.
    crate::memory::keep_freed();
    // Ready once everything that was in the topics at start has been applied.
    let targets: Vec<i64> = source.progress().iter().map(|p| p.end_offset).collect();
    let mut last_refresh = Instant::now();
    let mut last_snapshot = Instant::now();
    let mut unsaved = false;
    let mut writing: Option<BackgroundSnapshot> = None;
    let mut stalled = std::collections::HashSet::new();
    let mut retries = Retries::default();
    shared.set_partitions(source.progress());
    while !stop.load(Ordering::Relaxed) {
        let batch = match source.poll_batch(cfg.max_batch, cfg.poll_wait) {
            Ok(batch) => {
                shared.set_source_error(None);
                batch
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading from Kafka failed; librdkafka keeps retrying");
                shared.set_source_error(Some(e.to_string()));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        if !batch.is_empty() || intake.waiting() {
            unsaved |= !batch.is_empty();
            let transient = apply_batch(&mut engine, views.as_mut(), &mut intake, batch, &source, &shared, sink.as_ref());
            retries.hold(&mut source, transient);
        }
        if let Some(views) = views.as_mut() {
            serve_view_commands(views, &source, &intake.transactions, sink.as_ref());
        }
        retries.resume_due(&mut source);
        if last_refresh.elapsed() > Duration::from_secs(1) {
            source.refresh_end_offsets();
            warn_of_stalls(source.progress(), &mut stalled);
            last_refresh = Instant::now();
        }
        shared.set_partitions(source.progress());
        if !shared.is_ready() && source.progress().iter().zip(&targets).all(|(p, t)| p.next_offset >= *t) {
            tracing::info!(rows = engine.len(), "view caught up with the topics; ready");
            shared.set_ready();
        }
        if let Some(done) = writing.as_ref().and_then(|w| w.finished(false)) {
            unsaved |= !done;
            writing = None;
        }
        if let Some(snapshots) = &snapshots {
            if unsaved && writing.is_none() && last_snapshot.elapsed() >= cfg.snapshot_every {
                writing = start_snapshot(snapshots, &source, &intake.transactions, &engine, views.as_ref(), &shared);
                (unsaved, last_snapshot) = (false, Instant::now());
            }
        }
    }
    // The last snapshot is written here, once the one in the background is done.
    if let Some(w) = writing.take() {
        unsaved |= !w.finished(true).unwrap_or(false);
    }
    if let (Some(snapshots), true) = (&snapshots, unsaved) {
        save_snapshot(snapshots, &source, &intake.transactions, &engine, views.as_ref(), &shared);
    }
}

/// Partitions held because a record could not be decoded for a transient
/// reason (the schema registry down): each is read again from that record
/// after a backoff that doubles while the failure lasts.
#[derive(Default)]
struct Retries {
    /// Held streams and when to read them again.
    due: HashMap<u32, Instant>,
    /// The backoff each stream last waited and the offset it was held at,
    /// kept until the stream reads past that offset.
    backoff: HashMap<u32, (Duration, i64)>,
}

impl Retries {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(10);

    fn hold(&mut self, source: &mut KafkaSource, failures: Vec<(u32, DecodeError)>) {
        // A stream read past the record it was held at decoded it: well again.
        let failed: std::collections::HashSet<u32> = failures.iter().map(|(stream, _)| *stream).collect();
        let progress = source.progress();
        self.backoff.retain(|stream, (_, at)| failed.contains(stream) || progress[*stream as usize].next_offset <= *at);
        for (stream, e) in failures {
            let backoff = self.backoff.get(&stream).map_or(Self::FIRST, |(b, _)| (*b * 2).min(Self::MAX));
            tracing::warn!(
                topic = %e.topic, partition = e.partition, offset = e.offset, retry_in_ms = backoff.as_millis() as u64, reason = %e.reason,
                "cannot decode this record for now; the partition waits and reads it again"
            );
            if let Err(err) = source.hold(stream, e.offset, e.reason.to_string()) {
                tracing::error!(error = %err, topic = %e.topic, partition = e.partition, "cannot hold the partition");
            }
            self.backoff.insert(stream, (backoff, e.offset));
            self.due.insert(stream, Instant::now() + backoff);
        }
    }

    fn resume_due(&mut self, source: &mut KafkaSource) {
        let now = Instant::now();
        let due: Vec<u32> = self.due.iter().filter(|(_, at)| **at <= now).map(|(s, _)| *s).collect();
        for stream in due {
            match source.resume(stream) {
                Ok(()) => {
                    self.due.remove(&stream);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot resume a held partition yet");
                    self.due.insert(stream, now + Self::FIRST);
                }
            }
        }
    }
}

/// Logs once when a partition starts and stops being stalled.
fn warn_of_stalls(partitions: &[crate::source::PartitionProgress], stalled: &mut std::collections::HashSet<u32>) {
    let now = now_ms();
    for p in partitions {
        let stuck = p.is_stalled(now);
        if stuck && stalled.insert(p.stream) {
            tracing::warn!(
                topic = %p.topic, partition = p.partition, offset = p.next_offset, waiting = p.lag(), waited_ms = p.stalled_for_ms(now),
                "no record has arrived from this partition although the broker has more: \
                 the broker may be unable to serve the record at this offset (tansu never serves records over about 6 MB)"
            );
        } else if !stuck && stalled.remove(&p.stream) {
            tracing::info!(topic = %p.topic, partition = p.partition, offset = p.next_offset, "the partition moves again");
        }
    }
}

/// The engine and a source positioned right after what the engine holds:
/// restored from the snapshot when there is a usable one, else empty with the
/// source at the beginning of every topic. Also the transactions the snapshot
/// says were released.
fn start(
    cfg: &PipelineConfig,
    topics: &[String],
    snapshots: Option<&Snapshots>,
    shared: &Shared,
    sink: Option<&mpsc::UnboundedSender<SinkBatch>>,
    stop: &AtomicBool,
    views: Option<&mut SqlViews>,
) -> Option<(OrderDetailsView, KafkaSource, Vec<String>)> {
    let loaded = snapshots.and_then(load_snapshot).filter(|(_, _, _, views_state)| fits_views(views_state, views.as_deref()));
    if let Some((Covered { positions, released_transactions }, engine, deltas, views_state)) = loaded {
        let resume: HashMap<(String, i32), i64> = positions.iter().map(|p| ((p.topic.clone(), p.partition), p.next_offset)).collect();
        // A transaction topic the snapshot does not cover (it was written
        // before transactions were tracked) is read from its end: its ENDs
        // so far belong to changes the snapshot already holds, and waiting for
        // those changes would only stall the view until the timeout.
        let tail: Vec<String> = cfg
            .topics
            .iter()
            .filter(|(t, i)| *i == Input::Transactions && !positions.iter().any(|p| &p.topic == t))
            .map(|(t, _)| t.clone())
            .collect();
        let source = connect_with_retry(cfg, topics, &resume, &tail, shared, stop)?;
        if covers(&positions, source.progress()) {
            let view_rows = match (views, views_state) {
                (Some(views), Some(state)) => {
                    restore_views(views, state);
                    views.all_rows()
                }
                _ => Vec::new(),
            };
            shared.update_snapshot(|s| s.restored_from = Some(positions.clone()));
            shared.publish(&deltas, 0, 0, None);
            if let Some(sink) = sink {
                let log_ends = source
                    .progress()
                    .iter()
                    .map(|p| Position { topic: p.topic.clone(), partition: p.partition, next_offset: p.end_offset })
                    .collect();
                let _ = sink.send(SinkBatch {
                    deltas,
                    views: view_rows,
                    added: Vec::new(),
                    dropped: Vec::new(),
                    offsets: positions,
                    dead_letters: Vec::new(),
                    restored: Some(log_ends),
                });
            }
            return Some((engine, source, released_transactions));
        }
        tracing::warn!("the snapshot reaches past the end of the topics (were they recreated?); discarding it and replaying the topics");
        if let Some(Err(e)) = snapshots.map(Snapshots::discard) {
            tracing::warn!(error = %e, "cannot remove the stale snapshot");
        }
    }
    let source = connect_with_retry(cfg, topics, &HashMap::new(), &[], shared, stop)?;
    Some((OrderDetailsView::new(), source, Vec::new()))
}

/// Whether a snapshot's rows for the SQL views fit the views declared now:
/// when views are declared, the snapshot must hold the rows of exactly the
/// sources they read, declared as they are now (logged when not, and the
/// topics are replayed instead).
fn fits_views(state: &Option<ViewsState>, views: Option<&SqlViews>) -> bool {
    let Some(views) = views else { return true };
    let fits = state.as_ref().is_some_and(|s| views.fits(s));
    if !fits {
        tracing::warn!(
            "the snapshot does not hold the rows the SQL views read as they are declared now (views were added or changed); replaying the topics"
        );
    }
    fits
}

fn restore_views(views: &mut SqlViews, state: ViewsState) {
    let started = Instant::now();
    match views.restore(state) {
        Ok(rows) => tracing::info!(source_rows = rows, elapsed_ms = started.elapsed().as_millis() as u64, "rebuilt the SQL views from the snapshot"),
        Err(e) => unreachable!("fits_views checked the snapshot: {e}"),
    }
}

type Restored = (Covered, OrderDetailsView, Vec<crate::engine::ViewDelta<crate::engine::OrderDetails>>, Option<ViewsState>);

/// Loads the snapshot and rebuilds the view from it; `None` (logged) when
/// there is none or it cannot be read, so the topics are replayed instead.
fn load_snapshot(snapshots: &Snapshots) -> Option<Restored> {
    let started = Instant::now();
    match snapshots.load() {
        Ok(Some((covered, state, views))) => {
            let (engine, deltas) = OrderDetailsView::restore(state);
            tracing::info!(rows = engine.len(), elapsed_ms = started.elapsed().as_millis() as u64, path = %snapshots.path().display(), "restored the state snapshot; resuming the topics where it ends");
            Some((covered, engine, deltas, views))
        }
        Ok(None) => {
            tracing::info!(path = %snapshots.path().display(), "no state snapshot yet; replaying the topics");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %snapshots.path().display(), "cannot read the state snapshot; replaying the topics");
            None
        }
    }
}

/// True when every position lies within its partition as the broker has it now.
fn covers(positions: &[Position], partitions: &[crate::source::PartitionProgress]) -> bool {
    positions.iter().all(|pos| partitions.iter().any(|p| p.topic == pos.topic && p.partition == pos.partition && pos.next_offset <= p.end_offset))
}

/// Where each partition must be read again from: the source's position, or
/// earlier where the transaction assembler holds records not yet applied, or
/// where `unread` says a record must be read again.
fn resume_positions(source: &KafkaSource, transactions: &TxAssembler, unread: &[(u32, i64)]) -> Vec<Position> {
    let mut held = transactions.resume_offsets();
    for &(stream, offset) in unread {
        let at = held.entry(stream).or_insert(offset);
        *at = (*at).min(offset);
    }
    source
        .progress()
        .iter()
        .map(|p| {
            let next_offset = held.get(&p.stream).map_or(p.next_offset, |&h| h.min(p.next_offset));
            Position { topic: p.topic.clone(), partition: p.partition, next_offset }
        })
        .collect()
}

/// What a snapshot taken now covers: where each partition resumes, and the
/// transactions released most recently.
fn covered_now(source: &KafkaSource, transactions: &TxAssembler) -> Covered {
    Covered {
        positions: resume_positions(source, transactions, &[]),
        released_transactions: transactions.released_ids().map(|id| id.to_string()).collect(),
    }
}

/// A snapshot a child process is writing, and what it will hold.
struct BackgroundSnapshot {
    writer: snapshot::Writer,
    version: u64,
    rows: usize,
    shared: Arc<Shared>,
}

impl BackgroundSnapshot {
    /// Whether the snapshot was saved (logged, and in `/status`), once the
    /// writer has finished; `None` while it writes (never with `wait`).
    fn finished(&self, wait: bool) -> Option<bool> {
        let result = self.writer.finished(wait)?;
        let elapsed_ms = self.writer.started.elapsed().as_millis() as u64;
        Some(match result {
            Ok(bytes) => {
                tracing::info!(rows = self.rows, bytes, elapsed_ms, "saved a state snapshot (written in the background)");
                self.shared.update_snapshot(|s| (s.saved_version, s.saved_ms) = (Some(self.version), Some(now_ms())));
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "saving the state snapshot failed; the next start replays more of the topics");
                false
            }
        })
    }
}

/// Starts a snapshot in the background; saves it in process (pausing the
/// pipeline) when no child process can be started.
fn start_snapshot(
    snapshots: &Snapshots,
    source: &KafkaSource,
    transactions: &TxAssembler,
    engine: &OrderDetailsView,
    views: Option<&SqlViews>,
    shared: &Arc<Shared>,
) -> Option<BackgroundSnapshot> {
    let version = shared.view.read().version;
    let covered = covered_now(source, transactions);
    let started = Instant::now();
    match snapshots.save_in_background(&covered, engine, views) {
        Some(writer) => {
            let paused_us = started.elapsed().as_micros() as u64;
            tracing::debug!(paused_us, "a child process writes the state snapshot");
            shared.snapshot_pause(paused_us);
            Some(BackgroundSnapshot { writer, version, rows: engine.len(), shared: Arc::clone(shared) })
        }
        None => {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot start a process to write the snapshot; writing it here");
            save_snapshot(snapshots, source, transactions, engine, views, shared);
            None
        }
    }
}

fn save_snapshot(
    snapshots: &Snapshots,
    source: &KafkaSource,
    transactions: &TxAssembler,
    engine: &OrderDetailsView,
    views: Option<&SqlViews>,
    shared: &Shared,
) {
    let version = shared.view.read().version;
    let started = Instant::now();
    let covered = covered_now(source, transactions);
    match snapshots.save(&covered, engine, views) {
        Ok(bytes) => {
            tracing::info!(rows = engine.len(), bytes, elapsed_ms = started.elapsed().as_millis() as u64, "saved a state snapshot");
            shared.update_snapshot(|s| (s.saved_version, s.saved_ms) = (Some(version), Some(now_ms())));
        }
        Err(e) => tracing::warn!(error = %e, "saving the state snapshot failed; the next start replays more of the topics"),
    }
}

fn connect_with_retry(
    cfg: &PipelineConfig,
    topics: &[String],
    resume: &HashMap<(String, i32), i64>,
    tail: &[String],
    shared: &Shared,
    stop: &AtomicBool,
) -> Option<KafkaSource> {
    let mut delay = Duration::from_millis(250);
    while !stop.load(Ordering::Relaxed) {
        match KafkaSource::connect(&cfg.brokers, cfg.fetch_wait, topics, resume, tail) {
            Ok(source) => {
                tracing::info!(brokers = %cfg.brokers, partitions = source.progress().len(), "consuming");
                shared.set_source_error(None);
                return Some(source);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot start consuming yet; will retry");
                shared.set_source_error(Some(e.to_string()));
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    None
}

/// Decodes and applies one polled batch. Returns the records that could not
/// be decoded for a transient reason, one per stream: neither they nor
/// anything after them in their partition was applied, and the caller holds
/// those partitions to read them again.
fn apply_batch(
    engine: &mut OrderDetailsView,
    views: Option<&mut SqlViews>,
    intake: &mut Intake,
    batch: Vec<(u32, Record)>,
    source: &KafkaSource,
    shared: &Shared,
    sink: Option<&mpsc::UnboundedSender<SinkBatch>>,
) -> Vec<(u32, DecodeError)> {
    let now = Instant::now();
    let polled_ms = now_ms();
    let mut changes = Vec::with_capacity(batch.len());
    let mut dead_letters = Vec::new();
    let mut transient: Vec<(u32, DecodeError)> = Vec::new();
    let mut newest_ms = None;
    intake.transactions.observe(source.progress().iter().map(|p| (p.stream, p.next_offset, p.end_offset)));
    for (stream, record) in &batch {
        if transient.iter().any(|(held, _)| held == stream) {
            continue; // read again from the failed record on
        }
        newest_ms = newest_ms.max(record.timestamp_ms);
        if let Some(ts) = record.timestamp_ms {
            shared.stages.broker.observe(Duration::from_millis(polled_ms.saturating_sub(ts).max(0) as u64), 1);
        }
        let Some(&input) = intake.inputs.get(&record.topic) else { continue };
        match intake.decoder.decode(input, record) {
            Ok(Decoded::Change(data, tx)) => {
                let change = Change { pos: Some(SourcePos { stream: *stream, offset: record.offset }), data };
                let tx = tx.filter(|_| intake.track_transactions);
                intake.transactions.push_change(change, tx, now, &mut changes);
            }
            Ok(Decoded::Boundary(Boundary::End { id, event_count, collections })) => {
                intake.transactions.push_end(id, &collections, event_count, (*stream, record.offset), now);
            }
            Ok(Decoded::Boundary(Boundary::Begin(_)) | Decoded::Tombstone | Decoded::Skipped(_)) => {}
            Err(e) if e.reason.is_transient() => {
                shared.transient_errors.fetch_add(1, Ordering::Relaxed);
                transient.push((*stream, *e));
            }
            Err(e) => dead_letters.push(report_decode_error(*e)),
        }
    }
    intake.transactions.release(now, &mut changes);
    shared.set_transactions(intake.transactions.stats());
    if batch.is_empty() && changes.is_empty() {
        return transient; // only a timeout check, and nothing timed out
    }
    let applied = changes.len();
    let view_changes = views.map(|v| v.apply(&changes)).unwrap_or_default();
    let deltas = engine.apply_batch(changes);
    shared.publish(&deltas, applied, dead_letters.len(), newest_ms);
    observe_stages(&shared.stages, &mut intake.transactions, applied, now.elapsed());
    if let Some(sink) = sink {
        let held: Vec<(u32, i64)> = transient.iter().map(|(stream, e)| (*stream, e.offset)).collect();
        let offsets = resume_positions(source, &intake.transactions, &held);
        // A closed sink only means it was not configured or has shut down.
        let _ = sink.send(SinkBatch { deltas, views: view_changes, added: Vec::new(), dropped: Vec::new(), offsets, dead_letters, restored: None });
    }
    transient
}

/// Records how long the changes applied in a batch were held, and how long
/// the batch took from its poll to the API.
fn observe_stages(stages: &Stages, transactions: &mut TxAssembler, applied: usize, apply: Duration) {
    let waits = transactions.take_waits();
    stages.transaction.observe(Duration::ZERO, applied.saturating_sub(waits.len()) as u64);
    for wait in waits {
        stages.transaction.observe(wait, 1);
    }
    stages.apply.observe(apply, applied as u64);
}

/// Adds and drops the views the API asked for, between two batches: a view
/// added is filled from the sources' rows as this batch left them, and its
/// table from the same rows.
fn serve_view_commands(views: &mut SqlViews, source: &KafkaSource, transactions: &TxAssembler, sink: Option<&mpsc::UnboundedSender<SinkBatch>>) {
    for command in views.commands() {
        let mut batch = SinkBatch {
            deltas: Vec::new(),
            views: Vec::new(),
            added: Vec::new(),
            dropped: Vec::new(),
            offsets: resume_positions(source, transactions, &[]),
            dead_letters: Vec::new(),
            restored: None,
        };
        match command {
            ViewCommand::Add { sql, reply } => {
                let started = Instant::now();
                let added = views.add(&sql);
                let answer = match added {
                    Ok((view, rows)) => {
                        tracing::info!(view = %view.info.name, rows = rows.len(), elapsed_ms = started.elapsed().as_millis() as u64, "added a view");
                        batch.added.push(view.info.name.clone());
                        let info = view.info.clone();
                        batch.views.push((view, rows));
                        Ok(info)
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            ViewCommand::Drop { name, reply } => {
                let dropped = views.drop_view(&name);
                if dropped.is_ok() {
                    tracing::info!(view = %name, "dropped a view");
                    batch.dropped.push(name);
                }
                let _ = reply.send(dropped);
            }
        }
        if let Some(sink) = sink.filter(|_| !batch.added.is_empty() || !batch.dropped.is_empty()) {
            let _ = sink.send(batch);
        }
    }
}

fn report_decode_error(e: DecodeError) -> DecodeError {
    tracing::warn!(topic = %e.topic, partition = e.partition, offset = e.offset, bytes = e.raw.len(), reason = %e.reason, "undecodable record kept as a dead letter");
    e
}
