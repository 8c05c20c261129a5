//! cdcview's SQL front end: the sources and views a user declares, parsed
//! (sqlparser, PostgreSQL dialect), checked against the subset the engine
//! maintains, and planned.
//!
//! ```text
//! views/*.sql --parse--> statements --declare--> Catalog
//!                                                 ├─ sources: topic, format, columns, primary key
//!                                                 └─ views: Plan (Get, Filter, Map, Join, Reduce,
//!                                                           RowNumber, TopOne, Distinct) + key
//! ```
//!
//! A construct outside the subset is refused when its file loads, with its
//! line and column; it never becomes a wrong answer. The plans are the
//! engine's (`cdcview-engine`'s `plan`, `expr` and `types`): this crate sits
//! on the engine, and knows nothing of Kafka, HTTP or databases.

pub mod catalog;
pub mod error;
pub mod planner;
pub mod types;

pub use catalog::{Catalog, Format, Kind, Relation, Source};
// The plan a view compiles to is the engine's.
pub use cdcview_engine::plan::{Column, JoinKind, Plan};
pub use cdcview_engine::types::SqlType;
pub use cdcview_engine::{expr, plan};
pub use error::SqlError;
