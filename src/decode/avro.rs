//! Confluent Avro: a zero magic byte, a 4-byte big-endian schema id, then the
//! Avro body. Writer schemas come from a Confluent-compatible registry over
//! HTTP and are cached by id. The body is mapped onto the JSON envelope shape
//! so one row reader serves both formats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::fields::{ColumnType, ColumnTypes};
use super::{debezium, Decoded, Input};
use crate::error::DecodeReason;

/// A writer schema and the column types read from it.
pub struct WriterSchema {
    pub schema: Schema,
    pub columns: ColumnTypes,
}

impl WriterSchema {
    pub fn parse(text: &str) -> Result<Self, String> {
        let schema = Schema::parse_str(text).map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(WriterSchema { schema, columns: column_types(&json) })
    }
}

/// Splits Confluent framing into the schema id and the Avro body.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeReason> {
    match bytes {
        [0, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [magic, ..] if bytes.len() >= 5 => Err(DecodeReason::AvroFraming(format!("magic byte {magic}, expected 0"))),
        _ => Err(DecodeReason::AvroFraming(format!("{} bytes, shorter than the 5-byte header", bytes.len()))),
    }
}

/// Decodes an Avro body written with `writer` as a Debezium event of `table`.
pub fn decode_body(table: Input, id: u32, writer: &WriterSchema, mut body: &[u8]) -> Result<Decoded, DecodeReason> {
    let value = apache_avro::from_avro_datum(&writer.schema, &mut body, None).map_err(|e| DecodeReason::AvroBody { id, reason: e.to_string() })?;
    let json = to_json(value).map_err(|reason| DecodeReason::AvroBody { id, reason })?;
    match table {
        Input::Transactions => super::transaction::decode_boundary(&json).map(Decoded::Boundary),
        table => debezium::decode_value(table, &json, Some(writer.columns.clone())),
    }
}

/// Avro values as the JSON converter would have written them; decimals as
/// base64 of their unscaled bytes, which [`ColumnTypes`] knows how to read.
fn to_json(v: Avro) -> Result<Value, String> {
    Ok(match v {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Value::from(i),
        Avro::Long(i) | Avro::TimeMicros(i) | Avro::TimestampMillis(i) | Avro::TimestampMicros(i) => Value::from(i),
        Avro::Float(f) => Value::from(f64::from(f)),
        Avro::Double(f) => Value::from(f),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Avro::Decimal(d) => {
            let bytes: Vec<u8> = Vec::try_from(d).map_err(|e| e.to_string())?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Avro::Union(_, inner) => to_json(*inner)?,
        Avro::Array(items) => Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Avro::Map(m) => Value::Object(m.into_iter().map(|(k, v)| Ok((k, to_json(v)?))).collect::<Result<Map<_, _>, String>>()?),
        Avro::Record(fields) => Value::Object(fields.into_iter().map(|(k, v)| Ok((k, to_json(v)?))).collect::<Result<Map<_, _>, String>>()?),
        other => return Err(format!("unsupported Avro value {other:?}")),
    })
}

/// Column types of the row record inside a Debezium Avro envelope schema.
fn column_types(envelope: &Value) -> ColumnTypes {
    let mut types = ColumnTypes::default();
    let row = envelope["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| matches!(f["name"].as_str(), Some("before" | "after")))
        .find_map(|f| branches(&f["type"]).find(|t| t["type"] == "record"));
    for col in row.and_then(|r| r["fields"].as_array()).into_iter().flatten() {
        let Some(name) = col["name"].as_str() else { continue };
        let Some(ty) = branches(&col["type"]).find(|t| t.is_object()) else { continue };
        let logical =
            ty["connect.name"].as_str().or(ty["logicalType"].as_str().filter(|l| *l == "decimal").map(|_| "org.apache.kafka.connect.data.Decimal"));
        let scale = ty["scale"].as_u64().map(|s| s as u32).or_else(|| ty["connect.parameters"]["scale"].as_str().and_then(|s| s.parse().ok()));
        types.insert(name, ColumnType { name: logical.map(str::to_string), scale });
    }
    types
}

/// The branches of a union, or the type itself.
fn branches(ty: &Value) -> impl Iterator<Item = &Value> {
    match ty {
        Value::Array(items) => items.iter().collect::<Vec<_>>().into_iter(),
        other => vec![other].into_iter(),
    }
}

/// A Confluent-compatible schema registry client with a cache by schema id.
/// Only found schemas are cached: a registry that was down may answer later.
pub struct SchemaRegistry {
    url: String,
    client: reqwest::blocking::Client,
    cache: HashMap<u32, Arc<WriterSchema>>,
}

impl SchemaRegistry {
    pub fn new(url: &str) -> Self {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().expect("a TLS backend is compiled in");
        SchemaRegistry { url: url.trim_end_matches('/').to_string(), client, cache: HashMap::new() }
    }

    /// The writer schema `id`. A registry that cannot be asked (unreachable,
    /// timing out, answering 5xx or garbage) is `SchemaUnavailable`, which the
    /// pipeline retries; only the registry's own "no such schema" (404) and a
    /// schema that does not parse are failures of the record.
    pub fn schema(&mut self, id: u32) -> Result<Arc<WriterSchema>, DecodeReason> {
        if let Some(s) = self.cache.get(&id) {
            return Ok(Arc::clone(s));
        }
        let unavailable = |reason: String| DecodeReason::SchemaUnavailable { id, reason };
        let response = self.client.get(format!("{}/schemas/ids/{id}", self.url)).send().map_err(|e| unavailable(e.to_string()))?;
        match response.status() {
            reqwest::StatusCode::NOT_FOUND => return Err(DecodeReason::SchemaNotFound { id }),
            status if !status.is_success() => return Err(unavailable(format!("registry answered {status}"))),
            _ => {}
        }
        let body: Value = response.json().map_err(|e| unavailable(e.to_string()))?;
        let text = body["schema"].as_str().ok_or_else(|| unavailable("no \"schema\" in the registry's answer".into()))?;
        let schema = Arc::new(WriterSchema::parse(text).map_err(|reason| DecodeReason::SchemaInvalid { id, reason })?);
        self.cache.insert(id, Arc::clone(&schema));
        Ok(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_checked() {
        assert_eq!(split_frame(&[0, 0, 0, 1, 2, 9]).unwrap(), (258, &[9u8][..]));
        assert!(matches!(split_frame(&[1, 0, 0, 0, 1]), Err(DecodeReason::AvroFraming(_))));
        assert!(matches!(split_frame(&[0, 0]), Err(DecodeReason::AvroFraming(_))));
    }
}
