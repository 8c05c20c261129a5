//! Decoding real Debezium payloads, captured from the running stack with
//! `scripts/capture_fixtures.py` under three converter settings:
//! `json-string` (schemas off, decimal.handling.mode=string, the default here),
//! `json-schema-precise` (schemas on, decimals as base64 bytes) and
//! `json-double` (decimals as JSON numbers).

use std::path::Path;
use std::sync::Arc;

use cdcview::change::TableChange;
use cdcview::decode::{decode_json, Decoded, Input};
use cdcview::source::Record;

const VARIANTS: [&str; 3] = ["json-string", "json-schema-precise", "json-double"];
const TABLES: [(&str, Input); 4] =
    [("users", Input::Users), ("addresses", Input::Addresses), ("orders", Input::Orders), ("order_items", Input::OrderItems)];

fn fixture(variant: &str, table: &str, op: &str) -> Option<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(variant).join(format!("{table}.{op}.json"));
    let value = std::fs::read(&path).ok()?;
    Some(Record { topic: Arc::from(format!("mysql.shop.{table}")), partition: 0, offset: 0, key: None, value: Some(value), timestamp_ms: None })
}

fn decode(variant: &str, table: &str, input: Input, op: &str) -> Option<Decoded> {
    let record = fixture(variant, table, op)?;
    Some(decode_json(input, &record).unwrap_or_else(|e| panic!("{variant}/{table}.{op}: {e}")))
}

#[test]
fn every_captured_payload_decodes() {
    let mut seen = 0;
    for variant in VARIANTS {
        for (table, input) in TABLES {
            for op in ["r", "c", "u", "d"] {
                if let Some(decoded) = decode(variant, table, input, op) {
                    assert!(matches!(decoded, Decoded::Change(..)), "{variant}/{table}.{op}: {decoded:?}");
                    seen += 1;
                }
            }
            assert_eq!(decode(variant, table, input, "tombstone"), Some(Decoded::Tombstone), "{variant}/{table}");
        }
    }
    assert!(seen >= 3 * 4 * 3, "fixtures are missing: only {seen} decoded");
}

#[test]
fn converter_settings_do_not_change_the_decoded_rows() {
    for (table, input) in TABLES {
        for op in ["c", "u", "d"] {
            let decoded: Vec<_> = VARIANTS.iter().filter_map(|v| decode(v, table, input, op)).collect();
            if decoded.is_empty() {
                continue;
            }
            assert_eq!(decoded.len(), 3, "{table}.{op} missing in a variant");
            assert_eq!(decoded[0], decoded[1], "{table}.{op}: string vs precise");
            assert_eq!(decoded[0], decoded[2], "{table}.{op}: string vs double");
        }
    }
}

#[test]
fn an_update_is_a_retraction_and_an_insertion_with_exact_money() {
    for variant in VARIANTS {
        let Some(Decoded::Change(TableChange::Orders(change), _)) = decode(variant, "orders", Input::Orders, "u") else { panic!("{variant}") };
        let (before, after) = (change.before.unwrap(), change.after.unwrap());
        assert_eq!(before.total.to_string(), "-0.05", "{variant}");
        assert_eq!(after.total.to_string(), "1234.50", "{variant}");
        assert_eq!(after.order_status.as_deref(), Some("Paid"));
        assert!(after.updated_date.is_some());
        let Some(Decoded::Change(TableChange::Orders(change), _)) = decode(variant, "orders", Input::Orders, "d") else { panic!("{variant}") };
        assert!(change.after.is_none() && change.before.is_some(), "{variant}: a delete retracts");
    }
}

/// Captured with `provide.transaction.metadata` on: one MySQL transaction that
/// inserted an order and two items, and its BEGIN and END events.
#[test]
fn transaction_metadata_ties_changes_to_their_end_event() {
    use cdcview::decode::{Boundary, TxMember};
    let tx_id = "file=mysql-bin.000001,pos=14382";
    let Some(Decoded::Change(TableChange::Orders(_), Some(order_tx))) = decode("json-transactions", "orders", Input::Orders, "c") else { panic!() };
    assert_eq!(order_tx, TxMember { id: tx_id.into(), total_order: Some(1) });
    let Some(Decoded::Change(TableChange::Items(_), Some(item_tx))) = decode("json-transactions", "order_items", Input::OrderItems, "c") else {
        panic!()
    };
    assert_eq!(item_tx, TxMember { id: tx_id.into(), total_order: Some(3) });
    assert_eq!(decode("json-transactions", "transaction", Input::Transactions, "begin"), Some(Decoded::Boundary(Boundary::Begin(tx_id.into()))));
    let Some(Decoded::Boundary(Boundary::End { id, event_count, mut collections })) =
        decode("json-transactions", "transaction", Input::Transactions, "end")
    else {
        panic!()
    };
    collections.sort();
    assert_eq!((id.as_ref(), event_count), (tx_id, 3));
    assert_eq!(collections, vec![("shop.order_items".to_string(), 2), ("shop.orders".to_string(), 1)]);
}
