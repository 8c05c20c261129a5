//! Typed access to the columns of a decoded row, whatever the converter's
//! settings: decimals as strings, numbers or base64 bytes; times as ISO-8601
//! strings or epoch numbers.

use std::str::FromStr;

use ahash::AHashMap;
use base64::Engine as _;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::change::{Text, Timestamp};
use crate::error::DecodeReason;

/// The scale of the shop schema's money columns, `DECIMAL(10,2)`.
pub const MONEY_SCALE: u32 = 2;

/// What an embedded Kafka Connect schema says of one column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnType {
    /// The logical type, e.g. `org.apache.kafka.connect.data.Decimal`.
    pub name: Option<String>,
    /// A decimal's scale.
    pub scale: Option<u32>,
}

/// Column types by name, from a Kafka Connect struct schema.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnTypes(AHashMap<String, ColumnType>);

impl ColumnTypes {
    /// Reads the columns of the row struct in a Debezium envelope schema.
    pub fn from_envelope_schema(schema: &Value) -> Self {
        let row = schema["fields"].as_array().into_iter().flatten().find(|f| matches!(f["field"].as_str(), Some("after" | "before")));
        let columns = row
            .and_then(|r| r["fields"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|col| {
                let field = col["field"].as_str()?.to_string();
                let name = col["name"].as_str().map(str::to_string);
                let scale = col["parameters"]["scale"].as_str().and_then(|s| s.parse().ok());
                Some((field, ColumnType { name, scale }))
            })
            .collect();
        ColumnTypes(columns)
    }

    pub fn insert(&mut self, column: &str, ty: ColumnType) {
        self.0.insert(column.to_string(), ty);
    }

    fn get(&self, column: &str) -> Option<&ColumnType> {
        self.0.get(column)
    }
}

/// One row's columns, with the schema's column types when there is one.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    types: Option<&'a ColumnTypes>,
}

impl<'a> Fields<'a> {
    pub fn new(map: &'a Map<String, Value>, types: Option<&'a ColumnTypes>) -> Self {
        Fields { map, types }
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    fn required(&self, name: &str) -> Result<&'a Value, DecodeReason> {
        self.present(name).ok_or_else(|| DecodeReason::MissingField(name.to_string()))
    }

    fn column_type(&self, name: &str) -> Option<&'a ColumnType> {
        self.types.and_then(|t| t.get(name))
    }

    pub fn i64(&self, name: &str) -> Result<i64, DecodeReason> {
        as_i64(name, self.required(name)?)
    }

    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, DecodeReason> {
        self.present(name).map(|v| as_i64(name, v)).transpose()
    }

    pub fn u64(&self, name: &str) -> Result<u64, DecodeReason> {
        as_u64(name, self.required(name)?)
    }

    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, DecodeReason> {
        self.present(name).map(|v| as_u64(name, v)).transpose()
    }

    pub fn string(&self, name: &str) -> Result<String, DecodeReason> {
        as_str(name, self.required(name)?).map(str::to_string)
    }

    /// A string column as [`Text`]: short values need no allocation.
    pub fn text(&self, name: &str) -> Result<Text, DecodeReason> {
        as_str(name, self.required(name)?).map(Text::new)
    }

    pub fn opt_text(&self, name: &str) -> Result<Option<Text>, DecodeReason> {
        self.present(name).map(|v| as_str(name, v).map(Text::new)).transpose()
    }

    /// A `DECIMAL` column, exact, at the column's scale.
    pub fn decimal(&self, name: &str, default_scale: u32) -> Result<Decimal, DecodeReason> {
        let value = self.required(name)?;
        let declared = self.column_type(name);
        let scale = declared.and_then(|t| t.scale).unwrap_or(default_scale);
        let is_bytes = declared.and_then(|t| t.name.as_deref()) == Some("org.apache.kafka.connect.data.Decimal");
        let mut d = match value {
            Value::String(s) if is_bytes => decimal_from_base64(name, s, scale)?,
            Value::String(s) => match parse_decimal(s) {
                Some(d) => d,
                None => decimal_from_base64(name, s, scale)?,
            },
            Value::Number(n) => parse_decimal(&n.to_string()).ok_or_else(|| wrong(name, "a decimal", value))?,
            _ => return Err(wrong(name, "a decimal", value)),
        };
        d.rescale(scale);
        Ok(d)
    }

    /// A time column: ISO-8601 text, or epoch milli/micro/nanoseconds.
    pub fn opt_timestamp(&self, name: &str) -> Result<Option<Timestamp>, DecodeReason> {
        let Some(value) = self.present(name) else { return Ok(None) };
        let logical = self.column_type(name).and_then(|t| t.name.as_deref());
        match value {
            Value::String(s) => parse_time_text(s).map(Some).ok_or_else(|| wrong(name, "an ISO-8601 time", value)),
            Value::Number(n) => {
                let n = n.as_i64().ok_or_else(|| wrong(name, "an epoch time", value))?;
                Ok(Some(epoch_number(n, logical)))
            }
            _ => Err(wrong(name, "a time", value)),
        }
    }
}

fn as_i64(name: &str, v: &Value) -> Result<i64, DecodeReason> {
    v.as_i64().ok_or_else(|| wrong(name, "an integer", v))
}

fn as_u64(name: &str, v: &Value) -> Result<u64, DecodeReason> {
    v.as_u64().ok_or_else(|| wrong(name, "a count", v))
}

fn as_str<'v>(name: &str, v: &'v Value) -> Result<&'v str, DecodeReason> {
    v.as_str().ok_or_else(|| wrong(name, "a string", v))
}

pub fn wrong(field: &str, expected: &'static str, got: &Value) -> DecodeReason {
    let mut got = got.to_string();
    if got.len() > 64 {
        got.truncate(got.floor_char_boundary(64));
        got.push('…');
    }
    DecodeReason::WrongType { field: field.to_string(), expected, got }
}

/// Plain decimal text such as `-12.50`; scientific notation from a double too.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    if plain {
        Decimal::from_str(s).ok()
    } else if s.contains(['e', 'E']) {
        Decimal::from_scientific(s).ok()
    } else {
        None
    }
}

/// Kafka Connect's `Decimal`: the unscaled value as big-endian two's complement.
fn decimal_from_base64(name: &str, s: &str, scale: u32) -> Result<Decimal, DecodeReason> {
    let bad = || DecodeReason::WrongType { field: name.to_string(), expected: "a decimal", got: s.chars().take(64).collect() };
    let bytes = base64::engine::general_purpose::STANDARD.decode(s).map_err(|_| bad())?;
    decimal_from_twos_complement(&bytes, scale).ok_or_else(bad)
}

pub fn decimal_from_twos_complement(bytes: &[u8], scale: u32) -> Option<Decimal> {
    if bytes.is_empty() || bytes.len() > 12 || scale > 28 {
        return None;
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut unscaled: i128 = if negative { -1 } else { 0 };
    for b in bytes {
        unscaled = (unscaled << 8) | i128::from(*b);
    }
    Decimal::try_from_i128_with_scale(unscaled, scale).ok()
}

/// ISO-8601 with an offset (`ZonedTimestamp`), or a zone-less `YYYY-MM-DD
/// HH:MM:SS[.f]` taken as UTC.
pub fn parse_time_text(s: &str) -> Option<Timestamp> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(Timestamp(t.timestamp_micros()));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|fmt| chrono::NaiveDateTime::parse_from_str(s, fmt).ok())
        .map(|t| Timestamp(t.and_utc().timestamp_micros()))
}

/// Epoch numbers in the unit their logical type names; without a schema the
/// magnitude tells (milliseconds stay below 10^14 until the year 5138).
fn epoch_number(n: i64, logical: Option<&str>) -> Timestamp {
    match logical {
        Some("io.debezium.time.MicroTimestamp") => Timestamp(n),
        Some("io.debezium.time.NanoTimestamp") => Timestamp(n / 1000),
        Some("io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => Timestamp(n.saturating_mul(1000)),
        _ if n.unsigned_abs() >= 100_000_000_000_000_000 => Timestamp(n / 1000),
        _ if n.unsigned_abs() >= 100_000_000_000_000 => Timestamp(n),
        _ => Timestamp(n.saturating_mul(1000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decimals_in_every_mode() {
        let doc = json!({"a": "99.99", "b": 99.99, "c": "Jw8=", "d": 21.5, "e": "-0.05"});
        let f = Fields::new(doc.as_object().unwrap(), None);
        assert_eq!(f.decimal("a", 2).unwrap().to_string(), "99.99");
        assert_eq!(f.decimal("b", 2).unwrap().to_string(), "99.99");
        assert_eq!(f.decimal("c", 2).unwrap().to_string(), "99.99", "base64 of 9999");
        assert_eq!(f.decimal("d", 2).unwrap().to_string(), "21.50");
        assert_eq!(f.decimal("e", 2).unwrap().to_string(), "-0.05");
        assert!(matches!(f.decimal("missing", 2), Err(DecodeReason::MissingField(_))));
    }

    #[test]
    fn negative_twos_complement() {
        assert_eq!(decimal_from_twos_complement(&[0xFF, 0x38], 2).unwrap().to_string(), "-2.00");
    }

    #[test]
    fn times_as_text_and_numbers() {
        let doc = json!({"iso": "2026-11-23T03:34:13Z", "ms": 1795404853000i64, "us": 1795404853000000i64, "sql": "2026-11-23 03:34:13"});
        let f = Fields::new(doc.as_object().unwrap(), None);
        let want = Some(Timestamp(1_795_404_853_000_000));
        assert_eq!(f.opt_timestamp("iso").unwrap(), want);
        assert_eq!(f.opt_timestamp("ms").unwrap(), want);
        assert_eq!(f.opt_timestamp("us").unwrap(), want);
        assert_eq!(f.opt_timestamp("sql").unwrap(), want);
        assert_eq!(f.opt_timestamp("none").unwrap(), None);
    }
}
