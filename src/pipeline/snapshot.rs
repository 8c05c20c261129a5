//! Snapshots of the engine's input state with the source positions they
//! cover, so that a restart loads the state and resumes the topics where the
//! snapshot ends instead of replaying them from the beginning.
//!
//! A snapshot is taken between batches, so it covers exactly the records up
//! to its positions. It is written to a temporary file, synced, then renamed
//! over the previous one: a crash at any moment leaves the old snapshot or the
//! new one, never a torn file. Records after the positions are replayed from
//! Kafka, so a restored view is exactly the view without the restart.

use std::fs::{self, File};
use std::io::{BufWriter, ErrorKind, Write as _};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::{EngineState, OrderDetailsView};
use crate::error::SnapshotError;
use crate::views::{SqlViews, ViewsState};

/// Bumped whenever the encoded state changes shape or meaning. Format 1 had
/// no released transactions, and its item lines were rendered before line
/// totals kept their scale (`Total: 0` for `0.00`): it is not loaded, so
/// the topics are replayed instead and every line is rendered anew. Format
/// 2 had no rows for the SQL-defined views. Format 3 keyed each status
/// event of a keyless source by its stream and offset as two values, where
/// now one integer holds both: a snapshot of it would key the events it
/// holds apart from the same events read again.
const FORMAT: u32 = 4;
const FILE: &str = "engine.snapshot";
/// The snapshot writer's niceness: a child encoding a million orders
/// takes about a core-second, which on a small machine would otherwise come
/// out of the API's and the pipeline's latency.
const WRITER_NICENESS: libc::c_int = 10;

/// Where reading resumes: the next offset of one topic partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// What a snapshot covers besides the engine's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    /// Where each partition resumes.
    pub positions: Vec<Position>,
    /// The MySQL transactions released most recently, so that one Debezium
    /// sends again is not waited for after a restart.
    pub released_transactions: Vec<String>,
}

/// A snapshot being written by a child process.
pub struct Writer {
    pid: libc::pid_t,
    /// Where the child leaves its error, if it fails.
    failure: PathBuf,
    path: PathBuf,
    pub started: std::time::Instant,
}

impl Writer {
    /// The size written once the child has finished, its error if it
    /// failed; `None` while it is still writing (or with `wait`, never).
    pub fn finished(&self, wait: bool) -> Option<Result<u64, String>> {
        let mut status = 0;
        // SAFETY: waits for this writer's own child only, by its pid.
        let reaped = unsafe { libc::waitpid(self.pid, &mut status, if wait { 0 } else { libc::WNOHANG }) };
        if reaped == 0 {
            return None;
        }
        if reaped < 0 {
            return Some(Err(format!("cannot wait for the snapshot writer: {}", std::io::Error::last_os_error())));
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            return Some(Ok(fs::metadata(&self.path).map_or(0, |m| m.len())));
        }
        let reason = fs::read_to_string(&self.failure).unwrap_or_else(|_| format!("the snapshot writer ended with status {status}"));
        let _ = fs::remove_file(&self.failure);
        Some(Err(reason))
    }
}

/// The snapshot file in one folder.
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn new(dir: PathBuf) -> Result<Self, SnapshotError> {
        fs::create_dir_all(&dir)?;
        // Files a killed writer left behind (a writer still running loses
        // only its own unfinished file: its rename fails).
        for entry in fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(FILE) && (name.ends_with(".tmp") || name.ends_with(".error")) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Snapshots { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Writes the engine's state, the rows the SQL views read, and what they
    /// cover; returns the size in bytes.
    pub fn save(&self, covered: &Covered, engine: &OrderDetailsView, views: Option<&SqlViews>) -> Result<u64, SnapshotError> {
        self.write(&self.dir.join(format!("{FILE}.tmp")), covered, engine, views)
    }

    /// Starts writing a snapshot of the state as it is now in a child
    /// process, and returns at once: the pipeline goes on applying while the
    /// child writes. As Redis's `BGSAVE` does: `fork` gives the child a
    /// copy-on-write image of this process, frozen at this instant, so the
    /// pause is the time to copy the page tables (milliseconds), not the
    /// time to encode and sync the state (about a second per million
    /// orders). `None` when the child could not be started (the caller
    /// saves in process instead).
    pub fn save_in_background(&self, covered: &Covered, engine: &OrderDetailsView, views: Option<&SqlViews>) -> Option<Writer> {
        // Everything the child needs is made here, so that the child itself
        // only encodes, writes and exits.
        let tmp = self.dir.join(format!("{FILE}.{}.tmp", std::process::id()));
        let failure = self.dir.join(format!("{FILE}.{}.error", std::process::id()));
        let _ = fs::remove_file(&failure);
        // SAFETY: the child runs only the code below on this thread's
        // state, which nothing else changes (the other threads do not exist
        // in the child): it encodes the engine's state to a file with plain
        // system calls and the allocator (this thread's own heap), takes no
        // lock that another thread could have held at the fork (no logging,
        // no stdio), and leaves with `_exit`, running no destructor or exit
        // handler of the parent's resources.
        match unsafe { libc::fork() } {
            0 => {
                // Below the pipeline and the API, which serve readers now;
                // the snapshot only has to be done before the next one.
                // SAFETY: a plain system call on this process.
                unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, WRITER_NICENESS) };
                let code = match self.write(&tmp, covered, engine, views) {
                    Ok(_) => 0,
                    Err(e) => {
                        let _ = fs::write(&failure, e.to_string());
                        let _ = fs::remove_file(&tmp);
                        1
                    }
                };
                // SAFETY: ends the child without unwinding into the parent's code.
                unsafe { libc::_exit(code) }
            }
            pid if pid > 0 => Some(Writer { pid, failure, path: self.path(), started: std::time::Instant::now() }),
            _ => None,
        }
    }

    fn write(&self, tmp: &std::path::Path, covered: &Covered, engine: &OrderDetailsView, views: Option<&SqlViews>) -> Result<u64, SnapshotError> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        out = postcard::to_io(&FORMAT, out)?;
        out = postcard::to_io(covered, out)?;
        out = postcard::to_io(&engine.state(), out)?;
        out = postcard::to_io(&views.map(SqlViews::state), out)?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        fs::rename(tmp, self.path())?;
        // Make the rename itself durable.
        File::open(&self.dir)?.sync_all()?;
        Ok(size)
    }

    /// The saved state and what it covers, or `None` when there is no snapshot.
    pub fn load(&self) -> Result<Option<(Covered, EngineState, Option<ViewsState>)>, SnapshotError> {
        let bytes = match fs::read(self.path()) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (format, rest): (u32, &[u8]) = postcard::take_from_bytes(&bytes)?;
        if format != FORMAT {
            return Err(SnapshotError::Format { found: format, expected: FORMAT });
        }
        let (covered, rest) = postcard::take_from_bytes(rest)?;
        let (state, rest) = postcard::take_from_bytes(rest)?;
        Ok(Some((covered, state, postcard::from_bytes(rest)?)))
    }

    /// Removes the snapshot, so the next start replays the topics.
    pub fn discard(&self) -> Result<(), SnapshotError> {
        match fs::remove_file(self.path()) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::IncrementalView;
    use crate::workload::{Sizes, Workload};

    #[test]
    fn a_restored_view_equals_the_saved_one_and_keeps_applying_changes() {
        let dir = std::env::temp_dir().join(format!("cdcview-snapshot-test-{}", std::process::id()));
        let snapshots = Snapshots::new(dir.clone()).unwrap();
        assert!(snapshots.load().unwrap().is_none());

        let mut workload = Workload::new(Sizes { users: 50, orders: 120, items: 300, events: 100 }, 7);
        let mut live = OrderDetailsView::new();
        live.apply_batch(workload.initial());
        live.apply_batch((0..500).map(|_| workload.next_change()).collect());
        let positions = vec![Position { topic: "mysql.shop.orders".into(), partition: 0, next_offset: 42 }];
        let covered = Covered { positions, released_transactions: vec!["file=mysql-bin.000003,pos=1234".into()] };
        snapshots.save(&covered, &live, None).unwrap();

        let (loaded, state, views) = snapshots.load().unwrap().unwrap();
        assert!(views.is_none());
        assert_eq!(loaded, covered);
        let (mut restored, deltas) = OrderDetailsView::restore(state);
        assert_eq!(deltas.len(), live.len(), "restoring inserts every row once");
        let rows = |v: &OrderDetailsView| {
            let mut rows: Vec<_> = v.rows().map(|r| (**r).clone()).collect();
            rows.sort_by_key(|r| r.order_id);
            rows
        };
        assert_eq!(rows(&restored), rows(&live));

        // Both go on identically: the restored state is the whole input state.
        let more: Vec<_> = (0..500).map(|_| workload.next_change()).collect();
        let strip = |mut changes: Vec<crate::change::Change>| {
            changes.iter_mut().for_each(|c| c.pos = None);
            changes
        };
        live.apply_batch(strip(more.clone()));
        restored.apply_batch(strip(more));
        assert_eq!(rows(&restored), rows(&live));

        snapshots.discard().unwrap();
        assert!(snapshots.load().unwrap().is_none());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_background_snapshot_holds_the_state_of_its_start_while_the_view_goes_on() {
        let dir = std::env::temp_dir().join(format!("cdcview-snapshot-bg-test-{}", std::process::id()));
        let snapshots = Snapshots::new(dir.clone()).unwrap();
        let mut workload = Workload::new(Sizes { users: 200, orders: 2_000, items: 5_000, events: 1_000 }, 5);
        let mut live = OrderDetailsView::new();
        live.apply_batch(workload.initial());
        let rows = |v: &OrderDetailsView| {
            let mut rows: Vec<_> = v.rows().map(|r| (**r).clone()).collect();
            rows.sort_by_key(|r| r.order_id);
            rows
        };
        let at_start = rows(&live);
        let writer = snapshots.save_in_background(&Covered::default(), &live, None).expect("fork");
        // The pipeline goes on while the child writes.
        for _ in 0..20 {
            live.apply_batch((0..500).map(|_| workload.next_change()).collect());
        }
        assert_ne!(rows(&live), at_start);
        let bytes = writer.finished(true).expect("waited").expect("written");
        assert!(bytes > 0);
        let (_, state, _) = snapshots.load().unwrap().unwrap();
        let (restored, _) = OrderDetailsView::restore(state);
        assert_eq!(rows(&restored), at_start, "the snapshot is the state at the fork, not after");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).filter(|n| n != FILE).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let _ = fs::remove_dir_all(dir);
    }

    /// A format 1 snapshot (format, positions, state) holds item lines
    /// rendered by older rules: it is refused, so the topics are replayed.
    #[test]
    fn a_format_1_snapshot_is_refused() {
        let dir = std::env::temp_dir().join(format!("cdcview-snapshot-v1-test-{}", std::process::id()));
        let snapshots = Snapshots::new(dir.clone()).unwrap();
        let mut workload = Workload::new(Sizes { users: 5, orders: 12, items: 30, events: 10 }, 3);
        let mut live = OrderDetailsView::new();
        live.apply_batch(workload.initial());
        let positions = vec![Position { topic: "mysql.shop.users".into(), partition: 0, next_offset: 7 }];
        let mut bytes = postcard::to_stdvec(&1u32).unwrap();
        bytes.extend(postcard::to_stdvec(&positions).unwrap());
        bytes.extend(postcard::to_stdvec(&live.state()).unwrap());
        fs::write(snapshots.path(), bytes).unwrap();
        assert!(matches!(snapshots.load(), Err(SnapshotError::Format { found: 1, expected: FORMAT })));
        let _ = fs::remove_dir_all(dir);
    }
}
