//! Debezium transaction metadata (`provide.transaction.metadata`): the
//! `transaction` block of each change event, and the BEGIN/END events of the
//! transaction topic (`<topic.prefix>.transaction`).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::debezium::kind_of;
use super::fields::wrong;
use crate::error::DecodeReason;

/// The identifier Debezium gives a transaction (a GTID, or binlog file and
/// position where there is none).
pub type TxId = Arc<str>;

/// Which transaction a change event belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxMember {
    pub id: TxId,
    /// The event's position among all events of its transaction, from 1.
    /// Counting distinct positions keeps a resent event from counting twice.
    pub total_order: Option<u64>,
}

/// An event of the transaction topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boundary {
    Begin(TxId),
    /// The transaction committed with `event_count` change events in all,
    /// `collections` of them per table (`db.table`).
    End { id: TxId, event_count: u64, collections: Vec<(String, u64)> },
}

/// Reads the `transaction` block of a change event's envelope; `None` when it
/// is absent or null (snapshot rows, or metadata turned off).
pub fn member(envelope: &Map<String, Value>) -> Result<Option<TxMember>, DecodeReason> {
    let block = match envelope.get("transaction") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(block)) => block,
        Some(other) => return Err(wrong("transaction", "an object", other)),
    };
    let id = text(block, "id")?;
    let total_order = match block.get("total_order") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| wrong("transaction.total_order", "a count", v))?),
    };
    Ok(Some(TxMember { id, total_order }))
}

/// Decodes a transaction topic value (the JSON converter's, with or without
/// an embedded schema, or an Avro body already mapped to JSON).
pub fn decode_boundary(doc: &Value) -> Result<Boundary, DecodeReason> {
    let doc = match doc.get("payload") {
        Some(payload) if doc.get("schema").is_some() => payload,
        _ => doc,
    };
    let obj = doc.as_object().ok_or_else(|| DecodeReason::Shape(format!("expected a transaction event object, got {}", kind_of(doc))))?;
    let id = text(obj, "id")?;
    match text(obj, "status")?.as_ref() {
        "BEGIN" => Ok(Boundary::Begin(id)),
        "END" => {
            let event_count = count(obj, "event_count")?;
            let collections = match obj.get("data_collections") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items.iter().map(collection).collect::<Result<_, _>>()?,
                Some(other) => return Err(wrong("data_collections", "an array", other)),
            };
            Ok(Boundary::End { id, event_count, collections })
        }
        other => Err(DecodeReason::Shape(format!("transaction status {:?}, expected BEGIN or END", other.chars().take(16).collect::<String>()))),
    }
}

fn collection(v: &Value) -> Result<(String, u64), DecodeReason> {
    let obj = v.as_object().ok_or_else(|| wrong("data_collections[]", "an object", v))?;
    Ok((text(obj, "data_collection")?.to_string(), count(obj, "event_count")?))
}

fn text(obj: &Map<String, Value>, name: &str) -> Result<TxId, DecodeReason> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(DecodeReason::MissingField(name.into())),
        Some(Value::String(s)) => Ok(Arc::from(s.as_str())),
        Some(other) => Err(wrong(name, "a string", other)),
    }
}

fn count(obj: &Map<String, Value>, name: &str) -> Result<u64, DecodeReason> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(DecodeReason::MissingField(name.into())),
        Some(v) => v.as_u64().ok_or_else(|| wrong(name, "a count", v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn end_event_carries_counts_per_table() {
        let end = parse(
            r#"{"status":"END","id":"file=mysql-bin.000003,pos=1201","event_count":3,"ts_ms":1,
               "data_collections":[{"data_collection":"shop.orders","event_count":1},
                                   {"data_collection":"shop.order_items","event_count":2}]}"#,
        );
        assert_eq!(
            decode_boundary(&end).unwrap(),
            Boundary::End {
                id: "file=mysql-bin.000003,pos=1201".into(),
                event_count: 3,
                collections: vec![("shop.orders".into(), 1), ("shop.order_items".into(), 2)],
            }
        );
        let begin = parse(r#"{"schema":{},"payload":{"status":"BEGIN","id":"t1","event_count":null,"data_collections":null}}"#);
        assert_eq!(decode_boundary(&begin).unwrap(), Boundary::Begin("t1".into()));
    }

    #[test]
    fn malformed_boundaries_are_typed_errors() {
        assert!(matches!(decode_boundary(&parse(r#"{"status":"MAYBE","id":"t"}"#)), Err(DecodeReason::Shape(_))));
        assert!(matches!(decode_boundary(&parse(r#"{"status":"END","id":"t"}"#)), Err(DecodeReason::MissingField(_))));
        assert!(matches!(decode_boundary(&parse(r#"{"status":"END","id":"t","event_count":-1}"#)), Err(DecodeReason::WrongType { .. })));
        assert!(matches!(decode_boundary(&parse("[]")), Err(DecodeReason::Shape(_))));
    }

    #[test]
    fn member_reads_the_transaction_block() {
        let env = parse(r#"{"transaction":{"id":"t9","total_order":2,"data_collection_order":1}}"#);
        assert_eq!(member(env.as_object().unwrap()).unwrap(), Some(TxMember { id: "t9".into(), total_order: Some(2) }));
        assert_eq!(member(parse(r#"{"transaction":null}"#).as_object().unwrap()).unwrap(), None);
        assert!(member(parse(r#"{"transaction":5}"#).as_object().unwrap()).is_err());
    }
}
