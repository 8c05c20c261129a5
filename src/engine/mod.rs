//! The incremental view engine: decoded changes in, view deltas out.
//!
//! The engine holds the current state of every input table, keyed by primary
//! key, with each parent row's slot listing its children's keys. A batch of changes marks the view keys it
//! touches as dirty; after the batch, each dirty key is recomputed from state
//! and compared with its previous row, and only real differences leave the
//! engine as [`ViewDelta`]s. Because every input is keyed state (not a bag of
//! events), the result depends only on the latest version of each row, never
//! on how the topics interleave.
//!
//! The engine knows nothing of Kafka, HTTP or databases.

mod dedup;
mod item_list;
mod order_details;
pub mod shop_rows;

use std::sync::Arc;

pub use cdcview_engine::idmap::IdMap;
pub use dedup::Deduplicator;
pub use order_details::{format_address, item_line, sql_exact, EngineState, OrderDetails, OrderDetailsView};

use crate::change::Change;

/// One change to a view row: an insert (`before` absent), an update, or a
/// delete (`after` absent).
#[derive(Clone, Debug, PartialEq)]
pub struct ViewDelta<R> {
    pub key: i64,
    pub before: Option<Arc<R>>,
    pub after: Option<Arc<R>>,
}

impl<R> ViewDelta<R> {
    pub fn kind(&self) -> DeltaKind {
        match (&self.before, &self.after) {
            (None, _) => DeltaKind::Insert,
            (Some(_), Some(_)) => DeltaKind::Update,
            (Some(_), None) => DeltaKind::Delete,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeltaKind {
    Insert,
    Update,
    Delete,
}

impl DeltaKind {
    /// The name used on the wire (serde and the change stream's event names).
    pub fn as_str(self) -> &'static str {
        match self {
            DeltaKind::Insert => "insert",
            DeltaKind::Update => "update",
            DeltaKind::Delete => "delete",
        }
    }
}

/// A materialized view maintained from a stream of changes. A second view over
/// other inputs implements this trait; the pipeline around it stays the same.
pub trait IncrementalView {
    type Row;

    /// Applies one batch of changes and returns the view's deltas, at most one
    /// per key, in ascending key order.
    fn apply_batch(&mut self, changes: Vec<Change>) -> Vec<ViewDelta<Self::Row>>;

    /// The number of rows the view has now.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
