//! Error types at the library's boundaries. `anyhow` is kept to `main` and
//! the CLI glue; everything here says precisely what went wrong.

use std::fmt;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeReason {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error("unexpected shape: {0}")]
    Shape(String),
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    #[error("missing field {0:?}")]
    MissingField(String),
    #[error("field {field:?} has the wrong type: expected {expected}, got {got}")]
    WrongType { field: String, expected: &'static str, got: String },
    #[error("not Confluent Avro framing: {0}")]
    AvroFraming(String),
    /// The registry could not be asked (unreachable, timed out, a 5xx): a
    /// failure of the registry, not of the record, so it is retried.
    #[error("Avro schema {id} unavailable: {reason}")]
    SchemaUnavailable { id: u32, reason: String },
    /// The registry answered that it has no schema with this id.
    #[error("Avro schema {id} is not in the registry")]
    SchemaNotFound { id: u32 },
    #[error("Avro schema {id} from the registry is not a valid schema: {reason}")]
    SchemaInvalid { id: u32, reason: String },
    #[error("Avro body does not match schema {id}: {reason}")]
    AvroBody { id: u32, reason: String },
    #[error("record of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl DecodeReason {
    /// Whether the failure lies outside the record (the schema registry down
    /// or failing) and may go away: the record is read again later instead of
    /// becoming a dead letter.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeReason::SchemaUnavailable { .. })
    }
}

/// A record that could not be decoded, with where it was and what it held, so
/// it can be logged, counted and kept for inspection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct DecodeError {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub raw: Vec<u8>,
    pub reason: DecodeReason,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}: {} ({} bytes)", self.topic, self.partition, self.offset, self.reason, self.raw.len())
    }
}

/// Errors of the PostgreSQL sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
}

/// Errors of the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {topic:?} does not exist on {brokers} (create it, or start the Debezium connector first)")]
    MissingTopic { topic: String, brokers: String },
    #[error("cannot reach the Kafka brokers at {brokers} ({reason}); check CDCVIEW_BROKERS / --brokers and that the broker runs")]
    Unreachable { brokers: String, reason: rdkafka::error::KafkaError },
}

/// Saving or loading a state snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot file: {0}")]
    Io(#[from] std::io::Error),
    #[error("snapshot encoding: {0}")]
    Encoding(#[from] postcard::Error),
    #[error("snapshot format {found} is not the format {expected} this cdcview writes")]
    Format { found: u32, expected: u32 },
}
