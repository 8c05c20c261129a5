//! cdcview's incremental engine: the plans views compile to (`plan`,
//! `expr`, `types`: what `cdcview-sql` produces), and the operators that
//! run them over batches of source changes.
//!
//! ```text
//! SourceChange (source, key, row or none) --> source state (rows by key) --> Z-set deltas
//!   --> operators in plan order: Filter, Map, Join/LeftJoin (both sides indexed by
//!       the join key; a chain of joins on the first input's columns as one
//!       Star operator), Reduce (each group's rows), RowNumber/TopOne (each
//!       partition in order), Distinct
//!   --> each materialized view's rows by key --> RowChange (key, before, after)
//! ```
//!
//! Every operator turns the changes of its inputs into the changes of its
//! output, keeping only the state that needs. The engine knows nothing of
//! Kafka, HTTP or databases.

pub mod compact;
pub mod dataflow;
pub mod eval;
pub mod expr;
pub mod idmap;
pub mod key;
pub mod ops;
pub mod ordered;
pub mod plan;
pub mod star;
pub mod texts;
pub mod types;
pub mod value;

pub use dataflow::{Dataflow, RelationSpec, RowChange, SourceChange, ViewRows};
pub use key::Key;
pub use value::{Row, SharedRow, Value};
