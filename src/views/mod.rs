//! Views declared in SQL (`views/*.sql`), maintained by the SQL engine on
//! the pipeline thread beside the built-in `order_details_mv`, and published
//! for `GET /views`.
//!
//! ```text
//! views/*.sql --cdcview-sql--> Catalog --bind sources to topics by column name--> Dataflow
//! pipeline batch (typed changes) --ShopSources--> SourceChange --Dataflow--> RowChange
//!   --> ViewStore (rows by key, one version per batch) --> GET /views/{name}
//! ```
//!
//! `order_details_mv` declared exactly as `views/shop.sql` ships it is
//! maintained by the built-in engine (the same rows, checked by the oracle
//! tests, at a fraction of the cost); declared any other way, the SQL engine
//! maintains it under `/views/order_details_mv`. The state snapshot holds
//! the rows of every source a SQL view reads, so a restart rebuilds the views
//! from them without replaying the topics.

mod declared;
mod store;

use std::collections::BTreeMap;
use std::sync::Arc;

use cdcview_engine::{Dataflow, Row, RowChange, SourceChange};
use serde::{Deserialize, Serialize};

pub use declared::{located, sql_files, Declared, ServedView, ViewsError};
pub use store::{key_text, parse_key, value_json, value_text, PublishedView, ViewStore};

use crate::change::Change;
use crate::decode::Input;
use crate::engine::shop_rows::ShopSources;
use crate::engine::Deduplicator;

/// The SQL-maintained views and the source rows they are computed from.
pub struct SqlViews {
    flow: Dataflow,
    sources: ShopSources,
    /// Records redelivered after they were applied are skipped, as the
    /// built-in engine skips them.
    dedup: Deduplicator,
    store: Arc<ViewStore>,
    /// For each of the dataflow's views, its place in the store.
    slots: Vec<usize>,
    /// What the sources the views read are: a snapshot taken under other
    /// declarations does not fit them.
    fingerprint: String,
}

/// The rows of the sources the SQL views read, as a snapshot holds them.
#[derive(Debug, Serialize, Deserialize)]
pub struct ViewsState {
    pub fingerprint: String,
    pub sources: Vec<(String, Vec<(Row, Row)>)>,
}

/// [`ViewsState`]'s encoding written from the live dataflow, copying no row.
#[derive(Serialize)]
struct ViewsStateRef<'a> {
    fingerprint: &'a str,
    sources: Vec<(&'a str, Vec<(&'a Row, &'a Row)>)>,
}

impl SqlViews {
    /// The dataflow of the views `declared` leaves to the SQL engine, bound
    /// to the topics this service reads; `None` when there are none.
    pub fn new(declared: &Declared, topics: &[(String, Input)], store: Arc<ViewStore>) -> Result<Option<Self>, ViewsError> {
        let names: Vec<String> = declared.served.iter().filter(|v| !v.built_in).map(|v| v.name.clone()).collect();
        if names.is_empty() {
            return Ok(None);
        }
        let flow = Dataflow::with_views(&declared.catalog.specs(), Some(&names));
        let sources = ShopSources::bind(&flow, &declared.catalog, topics).map_err(ViewsError::Bind)?;
        let slots = flow.views().iter().map(|v| store.position(&v.name).expect("the store lists every served view")).collect();
        let fingerprint = declared.fingerprint(flow.read_sources().map(|(_, name)| name));
        Ok(Some(SqlViews { flow, sources, dedup: Deduplicator::default(), store, slots, fingerprint }))
    }

    /// Applies one batch of the pipeline's changes to every view; returns
    /// each changed view's row changes, by its place in the store.
    pub fn apply(&mut self, changes: &[Change]) -> Vec<(usize, Vec<RowChange>)> {
        let mut source_changes = Vec::with_capacity(changes.len());
        for change in changes.iter().filter(|c| self.dedup.accept(c.pos)) {
            self.sources.changes(change.clone(), &mut source_changes);
        }
        if source_changes.is_empty() {
            return Vec::new();
        }
        self.apply_source_changes(source_changes)
    }

    fn apply_source_changes(&mut self, changes: Vec<SourceChange>) -> Vec<(usize, Vec<RowChange>)> {
        let outputs = self.flow.apply(changes);
        let mut changed_views = Vec::new();
        for (slot, changed) in self.slots.iter().zip(outputs) {
            if !changed.is_empty() {
                self.store.views[*slot].apply(changed.clone());
                changed_views.push((*slot, changed));
            }
        }
        changed_views
    }

    /// Every row of every view, as insertions (for a sink that rewrites
    /// its tables after a restore).
    pub fn all_rows(&self) -> Vec<(usize, Vec<RowChange>)> {
        self.slots
            .iter()
            .map(|&slot| {
                let rows = self.store.views[slot].rows.read();
                let inserts = rows.by_key.iter().map(|(key, row)| RowChange { key: key.clone(), before: None, after: Some(row.clone()) }).collect();
                (slot, inserts)
            })
            .collect()
    }

    /// The state a snapshot keeps: every row of the sources the views read.
    pub fn state(&self) -> impl Serialize + '_ {
        ViewsStateRef {
            fingerprint: &self.fingerprint,
            sources: self.flow.read_sources().map(|(i, name)| (name, self.flow.source_rows(i).collect())).collect(),
        }
    }

    /// Whether a snapshot's source rows were saved under the declarations
    /// of the sources these views read.
    pub fn fits(&self, state: &ViewsState) -> bool {
        state.fingerprint == self.fingerprint && state.sources.iter().all(|(name, _)| self.flow.read_sources().any(|(_, n)| n == name))
    }

    /// Rebuilds every view from a snapshot's source rows; refused (and
    /// nothing applied) when they do not [`fit`](Self::fits).
    pub fn restore(&mut self, state: ViewsState) -> Result<usize, String> {
        if !self.fits(&state) {
            return Err("the snapshot holds the rows of other source declarations".into());
        }
        let positions: BTreeMap<String, usize> = self.flow.read_sources().map(|(i, name)| (name.to_string(), i)).collect();
        let mut restored = 0;
        for (name, rows) in state.sources {
            let source = positions[&name];
            restored += rows.len();
            // In slices, so that the deltas of one slice stay small.
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let slice: Vec<SourceChange> = rows.by_ref().take(100_000).map(|(key, row)| SourceChange { source, key, after: Some(row) }).collect();
                self.apply_source_changes(slice);
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::workload::{Mix, Sizes, Workload};

    pub fn shop_topics() -> Vec<(String, Input)> {
        Input::ALL
            .iter()
            .map(|&i| match i {
                Input::OrderUpdates => ("order_updates".to_string(), i),
                table => (format!("mysql.shop.{}", table.name()), table),
            })
            .collect()
    }

    /// The shop and the revenue example, as `serve --views` loads them,
    /// after a workload's initial rows and `steps` changes.
    pub fn revenue_views(steps: usize) -> (Declared, SqlViews, Arc<ViewStore>) {
        let declared = Declared::load(&[PathBuf::from("views/shop.sql"), PathBuf::from("views/examples/shop_revenue.sql")]).unwrap();
        let store = Arc::new(ViewStore::new(&declared.served));
        let mut views = SqlViews::new(&declared, &shop_topics(), Arc::clone(&store)).unwrap().expect("revenue_by_city is the SQL engine's");
        let mut workload = Workload::with_mix(Sizes { users: 60, orders: 200, items: 500, events: 100 }, 11, Mix::Churn);
        views.apply(&workload.initial());
        for _ in 0..steps / 100 {
            let batch: Vec<Change> = (0..100).map(|_| workload.next_change()).collect();
            views.apply(&batch);
        }
        (declared, views, store)
    }

    fn rows(store: &ViewStore, name: &str) -> BTreeMap<Row, Row> {
        store.get(name).unwrap().rows.read().by_key.clone()
    }

    #[test]
    fn the_store_holds_what_the_dataflow_computes_and_a_snapshot_rebuilds_it() {
        let (declared, views, store) = revenue_views(3000);
        let served: Vec<(&str, bool)> = declared.served.iter().map(|v| (v.name.as_str(), v.built_in)).collect();
        assert_eq!(served, [("order_details_mv", true), ("revenue_by_city", false)]);
        let flow_rows: BTreeMap<Row, Row> = {
            let v = &views.flow.views()[0];
            v.rows().map(|r| (v.key.as_ref().unwrap().iter().map(|&k| r[k].clone()).collect(), r.clone())).collect()
        };
        let published = rows(&store, "revenue_by_city");
        assert!(published.len() > 3, "the workload spreads users over cities");
        assert_eq!(published, flow_rows);

        let bytes = postcard::to_stdvec(&views.state()).unwrap();
        let state: ViewsState = postcard::from_bytes(&bytes).unwrap();
        let fresh = Arc::new(ViewStore::new(&declared.served));
        let mut restored = SqlViews::new(&declared, &shop_topics(), Arc::clone(&fresh)).unwrap().unwrap();
        assert!(restored.fits(&state));
        restored.restore(state).unwrap();
        assert_eq!(rows(&fresh, "revenue_by_city"), published);
    }

    #[test]
    fn a_source_on_a_topic_the_service_does_not_read_is_refused_by_name() {
        let mut catalog = cdcview_sql::Catalog::new();
        catalog.load(include_str!("../../views/shop.sql")).unwrap();
        catalog
            .load(
                "CREATE TABLE payments (id BIGINT PRIMARY KEY, amount DECIMAL(10,2)) WITH (connector = 'kafka', topic = 'mysql.shop.payments', format = 'debezium-json');
                 CREATE MATERIALIZED VIEW paid AS SELECT id, amount FROM payments;",
            )
            .unwrap();
        let declared = Declared::from_catalog(catalog).unwrap();
        let Err(e) = SqlViews::new(&declared, &shop_topics(), Arc::default()) else { panic!("bound an unknown topic") };
        assert!(e.to_string().contains("source payments reads topic mysql.shop.payments, which this service does not consume"), "{e}");
    }

    #[test]
    fn a_column_the_topic_lacks_or_types_differently_is_refused_by_name() {
        for (source, expected) in [
            ("CREATE TABLE u2 (user_id BIGINT PRIMARY KEY, nickname TEXT) WITH (connector='kafka', topic='mysql.shop.users', format='debezium-json');", "has no column nickname"),
            ("CREATE TABLE u2 (user_id BIGINT PRIMARY KEY, name BIGINT) WITH (connector='kafka', topic='mysql.shop.users', format='debezium-json');", "column name is text"),
            ("CREATE TABLE u2 (user_id BIGINT PRIMARY KEY, phone TEXT NOT NULL) WITH (connector='kafka', topic='mysql.shop.users', format='debezium-json');", "may be NULL"),
            ("CREATE TABLE u2 (user_id BIGINT, email TEXT PRIMARY KEY) WITH (connector='kafka', topic='mysql.shop.users', format='debezium-json');", "declare user_id as its PRIMARY KEY"),
        ] {
            let mut catalog = cdcview_sql::Catalog::new();
            catalog.load(source).unwrap();
            catalog.load("CREATE MATERIALIZED VIEW v AS SELECT * FROM u2;").unwrap();
            let declared = Declared::from_catalog(catalog).unwrap();
            let Err(e) = SqlViews::new(&declared, &shop_topics(), Arc::default()) else { panic!("bound {source}") };
            assert!(e.to_string().contains(expected), "{e} (expected {expected})");
        }
    }
}
