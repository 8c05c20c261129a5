//! Debezium change events (JSON converter) to typed row changes.

use serde_json::{Map, Value};

use super::fields::{ColumnTypes, Fields, MONEY_SCALE};
use super::{Decoded, Input};
use crate::change::{Address, Item, Order, RowChange, TableChange, User};
use crate::error::DecodeReason;

/// A row type of the shop schema, read from a row's columns.
pub trait FromFields: Sized {
    fn from_fields(f: &Fields) -> Result<Self, DecodeReason>;
}

impl FromFields for User {
    fn from_fields(f: &Fields) -> Result<Self, DecodeReason> {
        Ok(User { user_id: f.i64("user_id")?, name: f.text("name")?, email: f.text("email")?, phone: f.opt_text("phone")? })
    }
}

impl FromFields for Address {
    fn from_fields(f: &Fields) -> Result<Self, DecodeReason> {
        Ok(Address {
            address_id: f.i64("address_id")?,
            user_id: f.i64("user_id")?,
            street: f.text("street")?,
            city: f.text("city")?,
            state: f.opt_text("state")?,
            postal_code: f.opt_text("postal_code")?,
            country: f.text("country")?,
        })
    }
}

impl FromFields for Order {
    fn from_fields(f: &Fields) -> Result<Self, DecodeReason> {
        Ok(Order {
            order_id: f.i64("order_id")?,
            user_id: f.i64("user_id")?,
            total: f.decimal("total", MONEY_SCALE)?,
            order_date: f.opt_timestamp("order_date")?,
            order_status: f.opt_text("order_status")?,
            updated_date: f.opt_timestamp("updated_date")?,
        })
    }
}

impl FromFields for Item {
    fn from_fields(f: &Fields) -> Result<Self, DecodeReason> {
        Ok(Item {
            id: f.i64("id")?,
            order_id: f.opt_i64("order_id")?,
            name: f.opt_text("name")?,
            quantity: f.opt_i64("quantity")?,
            price: f.decimal("price", MONEY_SCALE)?,
        })
    }
}

/// Decodes one Debezium JSON value for `table`.
pub fn decode(table: Input, value: &[u8]) -> Result<Decoded, DecodeReason> {
    let doc: Value = serde_json::from_slice(value).map_err(|e| DecodeReason::NotJson(e.to_string()))?;
    decode_value(table, &doc, None)
}

/// Decodes an already parsed envelope. `types` overrides the embedded schema
/// (the Avro decoder knows the column types from its writer schema).
pub fn decode_value(table: Input, doc: &Value, types: Option<ColumnTypes>) -> Result<Decoded, DecodeReason> {
    let (payload, schema) = split_schema(doc)?;
    let Some(envelope) = payload else { return Ok(Decoded::Tombstone) };
    let types = types.or_else(|| schema.map(ColumnTypes::from_envelope_schema));
    let Some(op) = envelope.get("op") else {
        if envelope.contains_key("ddl") || envelope.contains_key("tableChanges") {
            return Ok(Decoded::Skipped("schema change event"));
        }
        return Err(DecodeReason::MissingField("op".into()));
    };
    let op = op.as_str().ok_or_else(|| super::fields::wrong("op", "a string", op))?;
    let types = types.as_ref();
    let change = match table {
        Input::Users => TableChange::Users(row_change(op, envelope, types)?),
        Input::Addresses => TableChange::Addresses(row_change(op, envelope, types)?),
        Input::Orders => TableChange::Orders(row_change(op, envelope, types)?),
        Input::OrderItems => TableChange::Items(row_change(op, envelope, types)?),
        Input::OrderUpdates | Input::Transactions => return Err(DecodeReason::Shape(format!("{} carries no Debezium change events", table.name()))),
    };
    Ok(match change_kind(op)? {
        Kind::Row => Decoded::Change(change, super::transaction::member(envelope)?),
        Kind::Skip(why) => Decoded::Skipped(why),
    })
}

enum Kind {
    Row,
    Skip(&'static str),
}

fn change_kind(op: &str) -> Result<Kind, DecodeReason> {
    match op {
        "c" | "r" | "u" | "d" => Ok(Kind::Row),
        // A truncate carries no rows; MySQL's binlog never sends one for the
        // shop tables unless someone truncates them by hand.
        "t" => Ok(Kind::Skip("truncate event")),
        "m" => Ok(Kind::Skip("logical decoding message")),
        other => Err(DecodeReason::UnknownOp(other.chars().take(16).collect())),
    }
}

/// `{"schema": .., "payload": ..}` when `schemas.enable` is on, the bare
/// envelope when off. A null payload is a tombstone.
/// The envelope (absent for a tombstone) and the embedded schema, if any.
type Split<'a> = (Option<&'a Map<String, Value>>, Option<&'a Value>);

pub(crate) fn split_schema(doc: &Value) -> Result<Split<'_>, DecodeReason> {
    let obj = match doc {
        Value::Null => return Ok((None, None)),
        Value::Object(obj) => obj,
        other => return Err(DecodeReason::Shape(format!("expected a JSON object, got {}", kind_of(other)))),
    };
    let (payload, schema) = match (obj.get("payload"), obj.get("schema")) {
        (Some(payload), Some(schema)) => (payload, Some(schema)),
        _ => (doc, None),
    };
    match payload {
        Value::Null => Ok((None, schema)),
        Value::Object(envelope) => Ok((Some(envelope), schema)),
        other => Err(DecodeReason::Shape(format!("payload is {}, not an object", kind_of(other)))),
    }
}

fn row_change<R: FromFields>(op: &str, envelope: &Map<String, Value>, types: Option<&ColumnTypes>) -> Result<RowChange<R>, DecodeReason> {
    let before = row(envelope, "before", types)?;
    let after = row(envelope, "after", types)?;
    let missing = |side: &str| DecodeReason::Shape(format!("op {op:?} without {side:?}"));
    match op {
        "c" | "r" => Ok(RowChange { before: None, after: Some(after.ok_or_else(|| missing("after"))?) }),
        "u" => Ok(RowChange { before, after: Some(after.ok_or_else(|| missing("after"))?) }),
        "d" => Ok(RowChange { before: Some(before.ok_or_else(|| missing("before"))?), after: None }),
        _ => Ok(RowChange { before: None, after: None }),
    }
}

fn row<R: FromFields>(envelope: &Map<String, Value>, side: &str, types: Option<&ColumnTypes>) -> Result<Option<R>, DecodeReason> {
    match envelope.get(side) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(cols)) => R::from_fields(&Fields::new(cols, types)).map(Some),
        Some(other) => Err(DecodeReason::Shape(format!("{side:?} is {}, not an object", kind_of(other)))),
    }
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"before":null,
      "after":{"order_id":5,"user_id":1,"total":"99.99","order_date":"2026-11-23T03:34:13Z",
               "order_status":"Created","updated_date":"2026-11-23T03:34:13Z"},
      "source":{"version":"3.6.3.Final","connector":"mysql","name":"mysql","db":"shop","table":"orders"},
      "transaction":null,"op":"c","ts_ms":1795404853560}"#;

    #[test]
    fn create_becomes_an_insert() {
        let Decoded::Change(TableChange::Orders(c), None) = decode(Input::Orders, ORDER.as_bytes()).unwrap() else { panic!() };
        assert!(c.before.is_none());
        let o = c.after.unwrap();
        assert_eq!((o.order_id, o.user_id, o.total.to_string()), (5, 1, "99.99".to_string()));
        assert_eq!(o.order_status.as_deref(), Some("Created"));
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        assert!(matches!(decode(Input::Orders, b"not json"), Err(DecodeReason::NotJson(_))));
        assert!(matches!(decode(Input::Orders, b"[1,2]"), Err(DecodeReason::Shape(_))));
        let bad_op = ORDER.replace(r#""op":"c""#, r#""op":"x""#);
        assert!(matches!(decode(Input::Orders, bad_op.as_bytes()), Err(DecodeReason::UnknownOp(_))));
        let no_pk = ORDER.replace(r#""order_id":5,"#, "");
        assert_eq!(decode(Input::Orders, no_pk.as_bytes()), Err(DecodeReason::MissingField("order_id".into())));
        let wrong = ORDER.replace(r#""user_id":1"#, r#""user_id":"one""#);
        assert!(matches!(decode(Input::Orders, wrong.as_bytes()), Err(DecodeReason::WrongType { .. })));
        assert_eq!(decode(Input::Orders, b"null"), Ok(Decoded::Tombstone));
    }
}
