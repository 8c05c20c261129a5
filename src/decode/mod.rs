//! The decode stage: pure functions from a record's bytes to typed changes.
//!
//! - [`debezium`]: Debezium change events as JSON, with or without embedded
//!   schemas, every `decimal.handling.mode`, tombstones.
//! - [`avro`]: the same events as Confluent Avro, schemas from a registry.
//! - [`status`]: the `order_updates` status events.
//! - [`transaction`]: Debezium's transaction metadata (which transaction a
//!   change belongs to, and the BEGIN/END events of the transaction topic).
//!
//! A record that cannot be decoded becomes a [`DecodeError`] carrying its
//! topic, partition, offset and raw bytes; decoders never panic.

pub mod avro;
pub mod debezium;
mod fields;
pub mod status;
pub mod transaction;

use crate::change::TableChange;
use crate::error::{DecodeError, DecodeReason};
use crate::source::Record;
pub use transaction::{Boundary, TxId, TxMember};

/// Records larger than this are refused rather than parsed: no row of the
/// shop schema comes near it, so such a record is a fault upstream.
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

/// Which input of the view a topic feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    Users,
    Addresses,
    Orders,
    OrderItems,
    OrderUpdates,
    /// Debezium's transaction topic: BEGIN and END of each MySQL transaction.
    Transactions,
}

impl Input {
    pub const ALL: [Input; 5] = [Input::Users, Input::Addresses, Input::Orders, Input::OrderItems, Input::OrderUpdates];

    /// The table name, as in `mysql.shop.<table>`, or the status topic's role.
    pub fn name(self) -> &'static str {
        match self {
            Input::Users => "users",
            Input::Addresses => "addresses",
            Input::Orders => "orders",
            Input::OrderItems => "order_items",
            Input::OrderUpdates => "order_updates",
            Input::Transactions => "transaction",
        }
    }
}

/// The wire format of the Debezium topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Debezium's JSON converter, with or without `schemas.enable`.
    Json,
    /// Confluent Avro: magic byte, schema id, Avro body; schemas from a registry.
    Avro,
}

/// What a record turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every record is a Change, moved once into the engine: boxing it would add an allocation per record and save nothing"
)]
pub enum Decoded {
    /// A change, and the MySQL transaction that wrote it when Debezium's
    /// transaction metadata says so.
    Change(TableChange, Option<TxMember>),
    /// A BEGIN or END of the transaction topic.
    Boundary(Boundary),
    /// The null-valued record Kafka compaction uses after a delete.
    Tombstone,
    /// A well-formed record that carries no row change (a DDL event, a truncate
    /// marker, a heartbeat); the reason says which.
    Skipped(&'static str),
}

/// Decodes a JSON record of `input`: a Debezium event or a status event.
pub fn decode_json(input: Input, record: &Record) -> Result<Decoded, Box<DecodeError>> {
    decode_with(record, |value| match input {
        Input::OrderUpdates => status::decode(value),
        Input::Transactions => {
            let doc = serde_json::from_slice(value).map_err(|e| DecodeReason::NotJson(e.to_string()))?;
            transaction::decode_boundary(&doc).map(Decoded::Boundary)
        }
        table => debezium::decode(table, value),
    })
}

/// Runs `decode` on the record's value after the checks every format shares,
/// and attaches the record's position and bytes to any failure.
pub(crate) fn decode_with(record: &Record, decode: impl FnOnce(&[u8]) -> Result<Decoded, DecodeReason>) -> Result<Decoded, Box<DecodeError>> {
    let value = match record.value.as_deref() {
        None | Some([]) => return Ok(Decoded::Tombstone),
        Some(v) => v,
    };
    let result =
        if value.len() > MAX_RECORD_BYTES { Err(DecodeReason::TooLarge { size: value.len(), limit: MAX_RECORD_BYTES }) } else { decode(value) };
    result.map_err(|reason| failure(record, reason))
}

/// A [`DecodeError`] for `record`. Boxed: it carries the record's bytes and
/// position, and the `Ok` side of a decode is much smaller.
pub fn failure(record: &Record, reason: DecodeReason) -> Box<DecodeError> {
    Box::new(DecodeError {
        topic: record.topic.to_string(),
        partition: record.partition,
        offset: record.offset,
        raw: record.value.clone().unwrap_or_default(),
        reason,
    })
}

/// Decodes records of any input in the configured format, holding what that
/// needs (the schema registry client and its cache for Avro).
pub struct Decoder {
    registry: Option<avro::SchemaRegistry>,
}

impl Decoder {
    pub fn new(format: Format, registry_url: Option<String>) -> Self {
        let registry = match format {
            Format::Json => None,
            Format::Avro => Some(avro::SchemaRegistry::new(registry_url.as_deref().unwrap_or("http://127.0.0.1:8081"))),
        };
        Decoder { registry }
    }

    pub fn decode(&mut self, input: Input, record: &Record) -> Result<Decoded, Box<DecodeError>> {
        match (&mut self.registry, input) {
            // Status events are JSON whatever the Debezium topics use.
            (None, _) | (_, Input::OrderUpdates) => decode_json(input, record),
            (Some(registry), table) => decode_with(record, |bytes| {
                let (id, body) = avro::split_frame(bytes)?;
                avro::decode_body(table, id, &*registry.schema(id)?, body)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_10_mb_record_is_refused_with_its_bytes_and_position() {
        let value = vec![b'{'; 10 * 1024 * 1024];
        let record =
            Record { topic: Arc::from("mysql.shop.orders"), partition: 0, offset: 77, key: None, value: Some(value.clone()), timestamp_ms: None };
        for input in [Input::Orders, Input::OrderUpdates, Input::Transactions] {
            let err = decode_json(input, &record).unwrap_err();
            assert_eq!((err.topic.as_str(), err.partition, err.offset), ("mysql.shop.orders", 0, 77));
            assert_eq!(err.reason, DecodeReason::TooLarge { size: value.len(), limit: MAX_RECORD_BYTES });
            assert_eq!(err.raw, value, "the raw bytes are kept for the dead-letter table");
        }
    }
}
