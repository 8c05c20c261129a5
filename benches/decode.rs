//! Decoding throughput, records per second: Debezium JSON (as captured from
//! the running stack, schemas off and on) and Confluent Avro (the body of an
//! orders update, with its writer schema already cached, as it is after the
//! first record of a schema id).
//!
//! `cargo bench --bench decode`

use std::hint::black_box;
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use cdcview::decode::{self, avro::WriterSchema, Input};
use cdcview::source::Record;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// The writer schema Debezium's AvroConverter registers for shop.orders.
const ORDERS_SCHEMA: &str = include_str!("../tests/fixtures/avro/orders.schema.json");

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn record(topic: &str, value: Vec<u8>) -> Record {
    Record { topic: Arc::from(topic), partition: 0, offset: 1, key: None, value: Some(value), timestamp_ms: None }
}

fn avro_row(status: &str) -> Avro {
    Avro::Record(vec![
        ("order_id".into(), Avro::Int(63)),
        ("user_id".into(), Avro::Int(23)),
        ("total".into(), Avro::Decimal(apache_avro::Decimal::from(vec![0x01, 0xE2, 0x3A]))),
        ("order_date".into(), Avro::Union(1, Box::new(Avro::String("2026-11-23T08:09:32Z".into())))),
        ("order_status".into(), Avro::Union(1, Box::new(Avro::String(status.into())))),
        ("updated_date".into(), Avro::Union(1, Box::new(Avro::String("2026-11-23T08:09:32Z".into())))),
    ])
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1));
    for (name, path, input, topic) in [
        ("json_orders_update", "json-string/orders.u.json", Input::Orders, "mysql.shop.orders"),
        ("json_items_insert", "json-string/order_items.c.json", Input::OrderItems, "mysql.shop.order_items"),
        ("json_with_schema_orders_update", "json-schema-precise/orders.u.json", Input::Orders, "mysql.shop.orders"),
    ] {
        let record = record(topic, fixture(path));
        group.bench_function(name, |b| b.iter(|| decode::decode_json(input, black_box(&record)).unwrap()));
    }
    let writer = WriterSchema::parse(ORDERS_SCHEMA).unwrap();
    let envelope = Avro::Record(vec![
        ("before".into(), Avro::Union(1, Box::new(avro_row("Created")))),
        ("after".into(), Avro::Union(1, Box::new(avro_row("Paid")))),
        ("op".into(), Avro::String("u".into())),
        ("ts_ms".into(), Avro::Union(1, Box::new(Avro::Long(1)))),
    ]);
    let body = apache_avro::to_avro_datum(&writer.schema, envelope).unwrap();
    group.bench_function("avro_orders_update", |b| b.iter(|| decode::avro::decode_body(Input::Orders, 7, &writer, black_box(&body)).unwrap()));
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);
