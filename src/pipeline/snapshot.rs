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
/// 2 had no rows for the SQL-defined views.
const FORMAT: u32 = 3;
const FILE: &str = "engine.snapshot";

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

/// The snapshot file in one folder.
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    pub fn new(dir: PathBuf) -> Result<Self, SnapshotError> {
        fs::create_dir_all(&dir)?;
        Ok(Snapshots { dir })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Writes the engine's state, the rows the SQL views read, and what they
    /// cover; returns the size in bytes.
    pub fn save(&self, covered: &Covered, engine: &OrderDetailsView, views: Option<&SqlViews>) -> Result<u64, SnapshotError> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        out = postcard::to_io(&FORMAT, out)?;
        out = postcard::to_io(covered, out)?;
        out = postcard::to_io(&engine.state(), out)?;
        out = postcard::to_io(&views.map(SqlViews::state), out)?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        fs::rename(&tmp, self.path())?;
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
        assert!(matches!(snapshots.load(), Err(SnapshotError::Format { found: 1, expected: 3 })));
        let _ = fs::remove_dir_all(dir);
    }
}
