//! Status events from `order_updates`:
//! `{"id": 17, "order_id": 42, "status": "cooked", "updated_at": 1732200000}`.
//!
//! `updated_at` is unix seconds as the reference event pusher sends it;
//! fractional seconds and ISO-8601 text are accepted too.

use serde_json::Value;

use super::fields::{parse_time_text, wrong, Fields};
use super::Decoded;
use crate::change::{StatusEvent, TableChange, Timestamp};
use crate::error::DecodeReason;

pub fn decode(value: &[u8]) -> Result<Decoded, DecodeReason> {
    let doc: Value = serde_json::from_slice(value).map_err(|e| DecodeReason::NotJson(e.to_string()))?;
    let obj = doc.as_object().ok_or_else(|| DecodeReason::Shape(format!("expected a JSON object, got {}", super::debezium::kind_of(&doc))))?;
    let f = Fields::new(obj, None);
    let updated_at = match obj.get("updated_at") {
        None | Some(Value::Null) => return Err(DecodeReason::MissingField("updated_at".into())),
        Some(v) => unix_time(v).ok_or_else(|| wrong("updated_at", "unix seconds or an ISO-8601 time", v))?,
    };
    let event = StatusEvent { id: f.i64("id")?, order_id: f.i64("order_id")?, status: f.text("status")?, updated_at };
    Ok(Decoded::Change(TableChange::Status(event), None))
}

fn unix_time(v: &Value) -> Option<Timestamp> {
    match v {
        Value::Number(n) => n.as_f64().filter(|s| s.is_finite()).map(Timestamp::from_unix_seconds),
        Value::String(s) => s.parse::<f64>().ok().filter(|s| s.is_finite()).map(Timestamp::from_unix_seconds).or_else(|| parse_time_text(s)),
        _ => None,
    }
}

/// Encodes an event as the reference event pusher does.
pub fn encode(event: &StatusEvent) -> Vec<u8> {
    let secs = event.updated_at.0 as f64 / 1_000_000.0;
    let updated_at = if event.updated_at.0 % 1_000_000 == 0 { Value::from(event.updated_at.0 / 1_000_000) } else { Value::from(secs) };
    serde_json::to_vec(&serde_json::json!({
        "id": event.id, "order_id": event.order_id, "status": event.status, "updated_at": updated_at,
    }))
    .expect("a JSON object always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> Result<StatusEvent, DecodeReason> {
        match decode(json.as_bytes())? {
            Decoded::Change(TableChange::Status(e), _) => Ok(e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn seconds_fractions_and_text() {
        let e = event(r#"{"id":17,"order_id":42,"status":"cooked","updated_at":1732200000}"#).unwrap();
        assert_eq!((e.id, e.order_id, e.updated_at), (17, 42, Timestamp(1_732_200_000_000_000)));
        let e = event(r#"{"id":1,"order_id":2,"status":"x","updated_at":1732200000.25}"#).unwrap();
        assert_eq!(e.updated_at, Timestamp(1_732_200_000_250_000));
        let e = event(r#"{"id":1,"order_id":2,"status":"x","updated_at":"2024-11-21T14:40:00Z"}"#).unwrap();
        assert_eq!(e.updated_at, Timestamp(1_732_200_000_000_000));
        assert!(matches!(event(r#"{"id":1,"order_id":2,"status":"x"}"#), Err(DecodeReason::MissingField(_))));
        assert!(matches!(event(r#"{"id":1,"order_id":2,"status":"x","updated_at":true}"#), Err(DecodeReason::WrongType { .. })));
    }

    #[test]
    fn encode_round_trips() {
        let e = StatusEvent { id: 3, order_id: 4, status: "received".into(), updated_at: Timestamp(1_732_200_000_000_000) };
        assert_eq!(decode(&encode(&e)).unwrap(), Decoded::Change(TableChange::Status(e), None));
    }
}
