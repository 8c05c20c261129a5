//! Debezium transaction metadata (`provide.transaction.metadata`): the
//! `transaction` block of each change event, and the BEGIN/END events of the
//! transaction topic (`<topic.prefix>.transaction`).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::debezium::split_schema;
use super::fields::{wrong, Fields};
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
    End {
        id: TxId,
        event_count: u64,
        collections: Vec<(String, u64)>,
    },
}

/// Reads the `transaction` block of a change event's envelope; `None` when it
/// is absent or null (snapshot rows, or metadata turned off).
pub fn member(envelope: &Map<String, Value>) -> Result<Option<TxMember>, DecodeReason> {
    let block = match envelope.get("transaction") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(block)) => block,
        Some(other) => return Err(wrong("transaction", "an object", other)),
    };
    let f = Fields::new(block, None);
    Ok(Some(TxMember { id: f.string("id")?.into(), total_order: f.opt_u64("total_order")? }))
}

/// Decodes a transaction topic value (the JSON converter's, with or without
/// an embedded schema, or an Avro body already mapped to JSON).
pub fn decode_boundary(doc: &Value) -> Result<Boundary, DecodeReason> {
    let (Some(obj), _) = split_schema(doc)? else { return Err(DecodeReason::Shape("a null transaction event".into())) };
    let f = Fields::new(obj, None);
    let id: TxId = f.string("id")?.into();
    match f.string("status")?.as_str() {
        "BEGIN" => Ok(Boundary::Begin(id)),
        "END" => {
            let event_count = f.u64("event_count")?;
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
    let f = Fields::new(obj, None);
    Ok((f.string("data_collection")?, f.u64("event_count")?))
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
