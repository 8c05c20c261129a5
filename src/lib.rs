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
//!     -> pipeline (one view version per batch; state snapshots + offsets for fast restarts)
//!          -> api   (axum: order_details_mv from memory, SSE change stream, OpenAPI)
//!          -> sink  (PostgreSQL: order_details_mv table for psql)
//! ```
//!
//! Each stage is a module; the engine holds no Kafka, HTTP or database types.

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
