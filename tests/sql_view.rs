//! The SQL-defined `order_details_mv` (views/shop.sql, run by the SQL
//! engine) against the hand-written engine, on the generated workloads of
//! `cdcview bench engine`: after every batch, the same rows changed, and at
//! the end the same view.

use cdcview::engine::shop_rows::{view_row, ShopSources};
use cdcview::engine::{IncrementalView, OrderDetailsView};
use cdcview::workload::{Mix, Sizes, Workload};
use cdcview_engine::{Dataflow, Row};

fn shop_dataflow() -> Dataflow {
    let mut catalog = cdcview_sql::Catalog::new();
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/views/shop.sql")).unwrap();
    catalog.load(&sql).unwrap_or_else(|e| panic!("views/shop.sql: {e}"));
    Dataflow::new(&catalog.specs())
}

fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

fn run(mix: Mix, seed: u64) {
    let sizes = Sizes { users: 60, orders: 150, items: 400, events: 150 };
    let mut workload = Workload::with_mix(sizes, seed, mix);
    let mut flow = shop_dataflow();
    let sources = ShopSources::of(&flow).expect("views/shop.sql declares the shop's sources");
    let mut engine = OrderDetailsView::new();
    let initial = workload.initial();
    let mut batches = vec![initial];
    for _ in 0..40 {
        batches.push((0..50).map(|_| workload.next_change()).collect());
    }
    let mut changed = 0;
    for (round, batch) in batches.into_iter().enumerate() {
        let mut changes = Vec::new();
        for change in batch.iter().cloned() {
            sources.changes(change, &mut changes);
        }
        let sql_changes = flow.apply(changes).remove(0);
        let hand_changes = engine.apply_batch(batch);
        let sql_keys: Vec<i64> = sql_changes
            .iter()
            .map(|c| match c.key.as_slice()[0] {
                cdcview_engine::Value::Int(k) => k,
                _ => panic!("an integer key"),
            })
            .collect();
        let hand_keys: Vec<i64> = hand_changes.iter().map(|d| d.key).collect();
        assert_eq!(sql_keys, hand_keys, "seed {seed}, {mix:?}, batch {round}: the rows that changed");
        changed += sql_keys.len();
        let view = &flow.views()[0];
        let sql_rows = sorted(view.rows().map(<[_]>::to_vec).collect());
        let hand_rows = sorted(engine.rows().map(|r| view_row(r)).collect());
        if sql_rows != hand_rows {
            let first = sql_rows.iter().zip(&hand_rows).find(|(a, b)| a != b);
            panic!(
                "seed {seed}, {mix:?}, batch {round}: {} SQL rows, {} hand-written rows; first difference:\n  sql:  {:?}\n  hand: {:?}",
                sql_rows.len(),
                hand_rows.len(),
                first.map(|f| f.0),
                first.map(|f| f.1)
            );
        }
    }
    // A comparison of two empty views would prove nothing.
    assert!(flow.views()[0].len() > 100 && changed > 500, "seed {seed}, {mix:?}: {} rows, {changed} changes", flow.views()[0].len());
}

#[test]
fn the_sql_view_equals_the_hand_written_engine_on_the_steady_mix() {
    for seed in 1..=5 {
        run(Mix::Steady, seed);
    }
}

#[test]
fn the_sql_view_equals_the_hand_written_engine_on_the_churn_mix() {
    for seed in 1..=5 {
        run(Mix::Churn, seed);
    }
}

/// A view over order_details_mv (whose star gives its rows by key) gets
/// that view's changes: after every batch, its groups are those of
/// order_details_mv's rows as they are.
fn shop_and_per_address() -> cdcview_sql::Catalog {
    let mut catalog = cdcview_sql::Catalog::new();
    let sql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/views/shop.sql")).unwrap();
    catalog.load(&sql).unwrap();
    catalog
        .load("CREATE MATERIALIZED VIEW per_address AS SELECT full_address, COUNT(*) AS orders, MAX(order_id) AS last_order FROM order_details_mv GROUP BY full_address;")
        .unwrap();
    catalog
}

#[test]
fn a_view_over_a_keyed_view_follows_its_rows() {
    use cdcview_engine::Value;
    use std::collections::BTreeMap;
    let catalog = shop_and_per_address();
    let mut flow = Dataflow::new(&catalog.specs());
    assert!(flow.views()[0].is_keyed(), "order_details_mv runs as a keyed star");
    let sources = ShopSources::of(&flow).unwrap();
    let mut workload = Workload::with_mix(Sizes { users: 40, orders: 150, items: 300, events: 100 }, 9, Mix::Churn);
    let mut batches = vec![workload.initial()];
    batches.extend((0..40).map(|_| (0..50).map(|_| workload.next_change()).collect::<Vec<_>>()));
    for (round, batch) in batches.into_iter().enumerate() {
        let mut changes = Vec::new();
        for change in batch {
            sources.changes(change, &mut changes);
        }
        flow.apply(changes);
        let mut expected: BTreeMap<Value, (i64, i64)> = BTreeMap::new();
        for row in flow.views()[0].rows() {
            let (Value::Int(order_id), address) = (&row[0], &row[7]) else { panic!("an order id") };
            let group = expected.entry(address.clone()).or_insert((0, i64::MIN));
            *group = (group.0 + 1, group.1.max(*order_id));
        }
        let expected: Vec<Row> = expected.into_iter().map(|(a, (n, last))| vec![a, Value::Int(n), Value::Int(last)]).collect();
        assert!(expected.len() > 5, "batch {round}: few groups prove little");
        assert_eq!(sorted(flow.views()[1].rows().map(<[_]>::to_vec).collect()), expected, "batch {round}");
    }
}

/// Dropping a keyed view that another view reads leaves its star giving
/// changes: the reader goes on equal to the same view in a dataflow where
/// order_details_mv was never materialized (its star never keyed).
#[test]
fn a_reader_of_a_dropped_keyed_view_goes_on() {
    let catalog = shop_and_per_address();
    let specs = catalog.specs();
    let mut flow = Dataflow::new(&specs);
    let mut alone = Dataflow::with_views(&specs, Some(&["per_address".to_string()]));
    assert!(!alone.views()[0].is_keyed());
    let sources = ShopSources::of(&flow).unwrap();
    let mut workload = Workload::with_mix(Sizes { users: 40, orders: 150, items: 300, events: 100 }, 5, Mix::Churn);
    let mut batches = vec![workload.initial()];
    batches.extend((0..40).map(|_| (0..50).map(|_| workload.next_change()).collect::<Vec<_>>()));
    for (round, batch) in batches.into_iter().enumerate() {
        if round == 10 {
            assert!(flow.drop_view("order_details_mv"));
        }
        let mut changes = Vec::new();
        for change in batch {
            sources.changes(change, &mut changes);
        }
        flow.apply(changes.clone());
        alone.apply(changes);
        let reader = flow.views().iter().find(|v| v.name == "per_address").unwrap();
        assert_eq!(sorted(reader.rows().map(<[_]>::to_vec).collect()), sorted(alone.views()[0].rows().map(<[_]>::to_vec).collect()), "batch {round}");
        assert!(reader.len() > 5, "batch {round}: few groups prove little");
    }
}
