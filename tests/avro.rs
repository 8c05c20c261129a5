//! Confluent Avro decoding through the real registry client, against a small
//! registry served in-process (no Confluent registry installs here; the
//! docker-compose stack has a real one).

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use cdcview::change::TableChange;
use cdcview::decode::{Decoded, Decoder, Format, Input};
use cdcview::error::DecodeReason;
use cdcview::source::Record;

/// The writer schema Debezium's AvroConverter registers for shop.orders.
const ORDERS_SCHEMA: &str = r#"{"type":"record","name":"Envelope","namespace":"mysql.shop.orders","fields":[
 {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
   {"name":"order_id","type":"int"},
   {"name":"user_id","type":"int"},
   {"name":"total","type":{"type":"bytes","scale":2,"precision":10,"connect.version":1,
      "connect.parameters":{"scale":"2","connect.decimal.precision":"10"},
      "connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}},
   {"name":"order_date","type":["null",{"type":"string","connect.version":1,"connect.name":"io.debezium.time.ZonedTimestamp"}],"default":null},
   {"name":"order_status","type":["null","string"],"default":null},
   {"name":"updated_date","type":["null",{"type":"string","connect.version":1,"connect.name":"io.debezium.time.ZonedTimestamp"}],"default":null}
  ],"connect.name":"mysql.shop.orders.Value"}],"default":null},
 {"name":"after","type":["null","Value"],"default":null},
 {"name":"op","type":"string"},
 {"name":"ts_ms","type":["null","long"],"default":null}
],"connect.name":"mysql.shop.orders.Envelope"}"#;

/// Serves `/schemas/ids/7` on a free port from a thread of its own; returns the URL.
fn registry() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/schemas/ids/{id}",
                axum::routing::get(|axum::extract::Path(id): axum::extract::Path<u32>| async move {
                    if id == 7 {
                        Ok(axum::Json(serde_json::json!({ "schema": ORDERS_SCHEMA })))
                    } else {
                        Err(axum::http::StatusCode::NOT_FOUND)
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn row(order_id: i32, unscaled: &[u8], status: &str) -> Avro {
    Avro::Record(vec![
        ("order_id".into(), Avro::Int(order_id)),
        ("user_id".into(), Avro::Int(3)),
        ("total".into(), Avro::Decimal(apache_avro::Decimal::from(unscaled.to_vec()))),
        ("order_date".into(), Avro::Union(1, Box::new(Avro::String("2026-11-23T03:34:13Z".into())))),
        ("order_status".into(), Avro::Union(1, Box::new(Avro::String(status.into())))),
        ("updated_date".into(), Avro::Union(0, Box::new(Avro::Null))),
    ])
}

fn framed(schema_id: u32, envelope: Avro) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(ORDERS_SCHEMA).unwrap();
    let mut bytes = vec![0];
    bytes.extend(schema_id.to_be_bytes());
    bytes.extend(apache_avro::to_avro_datum(&schema, envelope).unwrap());
    bytes
}

fn record(value: Vec<u8>) -> Record {
    Record { topic: Arc::from("mysql.shop.orders"), partition: 0, offset: 9, key: None, value: Some(value), timestamp_ms: None }
}

#[test]
fn an_avro_update_decodes_to_exact_rows() {
    let mut decoder = Decoder::new(Format::Avro, Some(registry()));
    let envelope = Avro::Record(vec![
        ("before".into(), Avro::Union(1, Box::new(row(5, &[0xFF, 0xFB], "Created")))),
        ("after".into(), Avro::Union(1, Box::new(row(5, &[0x01, 0xE2, 0x3A], "Paid")))),
        ("op".into(), Avro::String("u".into())),
        ("ts_ms".into(), Avro::Union(1, Box::new(Avro::Long(1)))),
    ]);
    let decoded = decoder.decode(Input::Orders, &record(framed(7, envelope))).unwrap();
    let Decoded::Change(TableChange::Orders(change), _) = decoded else { panic!("{decoded:?}") };
    let (before, after) = (change.before.unwrap(), change.after.unwrap());
    assert_eq!(before.total.to_string(), "-0.05");
    assert_eq!(after.total.to_string(), "1234.50");
    assert_eq!(after.order_status.as_deref(), Some("Paid"));
    assert_eq!(after.order_date.unwrap().to_rfc3339(), "2026-11-23T03:34:13Z");
    assert!(after.updated_date.is_none());
}

#[test]
fn unknown_schema_ids_and_a_silent_registry_are_decode_errors() {
    let mut decoder = Decoder::new(Format::Avro, Some(registry()));
    let envelope = Avro::Record(vec![
        ("before".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("after".into(), Avro::Union(1, Box::new(row(1, &[0x01], "Created")))),
        ("op".into(), Avro::String("c".into())),
        ("ts_ms".into(), Avro::Union(0, Box::new(Avro::Null))),
    ]);
    let err = decoder.decode(Input::Orders, &record(framed(8, envelope.clone()))).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::SchemaUnavailable { id: 8, .. }), "{err}");
    assert_eq!((err.offset, err.raw.len() > 5), (9, true), "the error keeps the position and the bytes");

    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut silent = Decoder::new(Format::Avro, Some(format!("http://127.0.0.1:{port}")));
    let err = silent.decode(Input::Orders, &record(framed(7, envelope))).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::SchemaUnavailable { id: 7, .. }), "{err}");

    let err = decoder.decode(Input::Orders, &record(b"{\"json\": true}".to_vec())).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::AvroFraming(_)), "{err}");
}
