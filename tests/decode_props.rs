//! Property tests: no decoder panics, whatever the bytes; failures are typed
//! errors that keep the record's position and raw bytes.

use std::sync::Arc;

use cdcview::decode::{decode_json, Decoder, Format, Input};
use cdcview::source::Record;
use proptest::prelude::*;

fn record(value: Vec<u8>) -> Record {
    Record { topic: Arc::from("t"), partition: 2, offset: 41, key: None, value: Some(value), timestamp_ms: None }
}

/// JSON values shaped like Debezium envelopes, with random field types.
fn envelope_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
        "[a-zA-Z0-9+/=.:T -]{0,12}".prop_map(|s| format!("{s:?}")),
        Just("true".to_string()),
    ];
    let cols = [
        "user_id",
        "order_id",
        "address_id",
        "id",
        "name",
        "email",
        "total",
        "price",
        "quantity",
        "street",
        "city",
        "country",
        "order_date",
        "updated_at",
        "status",
    ];
    let row = proptest::collection::vec((proptest::sample::select(cols.to_vec()), leaf.clone()), 0..8)
        .prop_map(|kv| format!("{{{}}}", kv.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(",")));
    (proptest::sample::select(vec!["c", "r", "u", "d", "t", "x"]), proptest::option::of(row.clone()), proptest::option::of(row), leaf).prop_map(
        |(op, before, after, extra)| {
            format!(
                r#"{{"op":"{op}","before":{},"after":{},"extra":{extra}}}"#,
                before.unwrap_or_else(|| "null".into()),
                after.unwrap_or_else(|| "null".into())
            )
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for input in Input::ALL {
            if let Err(e) = decode_json(input, &record(bytes.clone())) {
                prop_assert_eq!((e.partition, e.offset), (2, 41));
                prop_assert_eq!(&e.raw, &bytes);
            }
        }
        // A registry that is never reached: framing errors come first.
        let mut avro = Decoder::new(Format::Avro, Some("http://127.0.0.1:9".into()));
        if bytes.first() != Some(&0) {
            prop_assert!(avro.decode(Input::Orders, &record(bytes.clone())).is_err() || bytes.is_empty());
        }
    }

    #[test]
    fn envelope_shaped_json_never_panics(json in envelope_like()) {
        for input in Input::ALL {
            let _ = decode_json(input, &record(json.clone().into_bytes()));
        }
    }
}
