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
//! line and column; it never becomes a wrong answer. This crate knows
//! nothing of Kafka, HTTP or databases: the service crate reads the catalog
//! and runs the plans.

pub mod catalog;
pub mod error;
pub mod expr;
pub mod plan;
pub mod planner;
pub mod types;

pub use catalog::{Catalog, Format, Kind, Relation, Source};
pub use error::SqlError;
pub use plan::{Column, JoinKind, Plan};
pub use types::SqlType;
