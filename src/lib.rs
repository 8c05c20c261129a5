//! cdcview keeps a denormalized "order details" view exact and ready in
//! advance, from the change streams of the services that own the data.
//!
//! ```text
//! MySQL (shop, binlog) --Debezium--> mysql.shop.{users,addresses,orders,order_items}
//! event pusher ----------------->    order_updates (JSON status events)
//!
//!   source (Kafka: bytes + topic/partition/offset)
//!     -> decode (Debezium JSON / Confluent Avro / status JSON: pure functions)
//!     -> engine (incremental join: changes in, view deltas out)
//!        + views (views/*.sql and POST /views on the SQL engine, crates/engine + crates/sql)
//!     -> pipeline (one view version per batch; state snapshots + offsets for fast restarts)
//!          -> api   (axum: order_details_mv and /views from memory, SSE change streams, OpenAPI)
//!          -> sink  (PostgreSQL: one table per view for psql)
//! ```
//!
//! Each stage is a module; the engines hold no Kafka, HTTP or database types.

pub mod api;
pub mod change;
pub mod cli;
pub mod config;
pub mod decode;
pub mod engine;
pub mod error;
pub mod memory;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod views;
pub mod workload;
