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
const ORDERS_SCHEMA: &str = include_str!("fixtures/avro/orders.schema.json");

/// Serves `/schemas/ids/7` on a free port from a thread of its own; returns the URL.
fn registry() -> String {
    switchable_registry(Arc::new(std::sync::atomic::AtomicBool::new(true)))
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
fn an_unknown_schema_id_is_a_decode_error_and_a_silent_registry_is_transient() {
    let mut decoder = Decoder::new(Format::Avro, Some(registry()));
    let envelope = Avro::Record(vec![
        ("before".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("after".into(), Avro::Union(1, Box::new(row(1, &[0x01], "Created")))),
        ("op".into(), Avro::String("c".into())),
        ("ts_ms".into(), Avro::Union(0, Box::new(Avro::Null))),
    ]);
    // The registry says it has no schema 8: the record itself is wrong.
    let err = decoder.decode(Input::Orders, &record(framed(8, envelope.clone()))).unwrap_err();
    assert_eq!(err.reason, DecodeReason::SchemaNotFound { id: 8 }, "{err}");
    assert!(!err.reason.is_transient());
    assert_eq!((err.offset, err.raw.len() > 5), (9, true), "the error keeps the position and the bytes");

    // Nothing listens on this port: the registry is down, the record may be fine.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut silent = Decoder::new(Format::Avro, Some(format!("http://127.0.0.1:{port}")));
    let err = silent.decode(Input::Orders, &record(framed(7, envelope))).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::SchemaUnavailable { id: 7, .. }), "{err}");
    assert!(err.reason.is_transient(), "an unreachable registry is retried, not a dead letter");

    let err = decoder.decode(Input::Orders, &record(b"{\"json\": true}".to_vec())).unwrap_err();
    assert!(matches!(err.reason, DecodeReason::AvroFraming(_)), "{err}");
    assert!(!err.reason.is_transient());
}

/// A registry that answers 503 until `up` is set, then serves schema 7 (and
/// 404 for any other id). Returns its URL.
fn switchable_registry(up: Arc<std::sync::atomic::AtomicBool>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = axum::Router::new().route(
                "/schemas/ids/{id}",
                axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<u32>| async move {
                    use axum::http::StatusCode;
                    if !up.load(std::sync::atomic::Ordering::SeqCst) {
                        Err(StatusCode::SERVICE_UNAVAILABLE)
                    } else if id == 7 {
                        Ok(axum::Json(serde_json::json!({ "schema": ORDERS_SCHEMA })))
                    } else {
                        Err(StatusCode::NOT_FOUND)
                    }
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{addr}")
}

fn insert_envelope(order_id: i32) -> Avro {
    Avro::Record(vec![
        ("before".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("after".into(), Avro::Union(1, Box::new(row(order_id, &[0x01], "Created")))),
        ("op".into(), Avro::String("c".into())),
        ("ts_ms".into(), Avro::Union(0, Box::new(Avro::Null))),
    ])
}

/// Creates `topic` with one partition on the stack's broker and produces `records` to it.
fn produce_to_new_topic(brokers: &str, topic: &str, records: &[Vec<u8>]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let admin: AdminClient<_> = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let created = rt.block_on(admin.create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())).unwrap();
    assert!(created.iter().all(Result::is_ok), "creating {topic}: {created:?}");
    let producer: BaseProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    for value in records {
        producer.send(BaseRecord::<(), _>::to(topic).payload(value)).unwrap();
    }
    producer.flush(std::time::Duration::from_secs(30)).unwrap();
}

fn wait_for(what: &str, limit: std::time::Duration, check: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// While the schema registry is down, Avro records are neither applied nor
/// dead-lettered: their partition waits (shown in /status and /metrics) and
/// reads them again with backoff, and once the registry is back every
/// record is applied. A schema id the registry says it does not have is a
/// dead letter, and the partition goes on past it.
#[test]
#[ignore = "needs the running stack: scripts/test.sh"]
fn a_registry_outage_holds_the_partition_and_loses_nothing() {
    use cdcview::pipeline::{PipelineConfig, Shared};
    use std::sync::atomic::{AtomicBool, Ordering};

    let brokers = std::env::var("CDCVIEW_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topic = format!("cdcview_avro_outage_{}", rand::random::<u32>());
    let records = vec![framed(7, insert_envelope(1)), framed(8, insert_envelope(2)), framed(7, insert_envelope(3)), framed(7, insert_envelope(4))];
    produce_to_new_topic(&brokers, &topic, &records);

    let up = Arc::new(AtomicBool::new(false));
    let cfg = PipelineConfig {
        brokers,
        topics: vec![(topic.clone(), Input::Orders)],
        format: Format::Avro,
        schema_registry: Some(switchable_registry(Arc::clone(&up))),
        max_batch: 100,
        poll_wait: std::time::Duration::from_millis(20),
        fetch_wait: std::time::Duration::from_millis(10),
        state_dir: None,
        snapshot_every: std::time::Duration::from_secs(60),
        transaction_timeout: std::time::Duration::from_secs(10),
    };
    let shared = Shared::new();
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = {
        let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || cdcview::pipeline::run(cfg, shared, None, stop, None))
    };
    let retrying = || shared.status().partitions.first().is_some_and(|p| p.retrying.is_some());
    let limit = std::time::Duration::from_secs(30);
    // Retried with backoff: more than one attempt, each one not a dead letter.
    wait_for("the partition to retry twice", limit, || retrying() && shared.transient_errors.load(Ordering::Relaxed) >= 2);
    assert_eq!(shared.decode_errors.load(Ordering::Relaxed), 0, "no dead letter while the registry is down");
    assert_eq!(shared.changes_applied.load(Ordering::Relaxed), 0);
    let partition = shared.status().partitions[0].clone();
    assert_eq!(partition.next_offset, 0, "held at the record it could not decode");
    assert!(partition.retrying.as_deref().unwrap().contains("unavailable"), "{partition:?}");

    let router = cdcview::api::router(cdcview::api::AppState::new(Arc::clone(&shared), None));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let get = |uri: &str| -> String {
        use tower::ServiceExt;
        rt.block_on(async {
            let response = router.clone().oneshot(axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap()).await.unwrap();
            String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
        })
    };
    let metrics = get("/metrics");
    assert!(metrics.contains(&format!("cdcview_partition_retrying{{topic=\"{topic}\",partition=\"0\"}} 1")), "{metrics}");
    let status: serde_json::Value = serde_json::from_str(&get("/status")).unwrap();
    assert!(status["source"]["partitions"][0]["retrying"].is_string(), "{status}");

    up.store(true, Ordering::SeqCst);
    wait_for("every record to be applied", limit, || shared.changes_applied.load(Ordering::Relaxed) == 3);
    wait_for("the unknown schema to be a dead letter", limit, || shared.decode_errors.load(Ordering::Relaxed) == 1);
    let partition = shared.status().partitions[0].clone();
    assert_eq!((partition.next_offset, partition.retrying), (4, None));
    let metrics = get("/metrics");
    assert!(metrics.contains(&format!("cdcview_partition_retrying{{topic=\"{topic}\",partition=\"0\"}} 0")), "{metrics}");
    stop.store(true, Ordering::SeqCst);
    pipeline.join().unwrap();
}
