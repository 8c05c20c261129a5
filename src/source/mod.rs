//! The source stage: records from Kafka as plain bytes with their topic,
//! partition and offset. What the bytes mean is the decoders' business.

mod kafka;

use std::sync::Arc;

pub use kafka::{KafkaSource, PartitionProgress};

/// One record as read from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The record's timestamp in milliseconds, when the producer set one.
    pub timestamp_ms: Option<i64>,
}
