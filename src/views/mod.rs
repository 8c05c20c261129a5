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
mod posted;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cdcview_engine::{Dataflow, Key, Row, RowChange, SharedRow, SourceChange};
use serde::{Deserialize, Serialize};

pub use declared::{located, sql_files, Declared, ServedView, ViewsError};
pub use posted::PostedViews;
pub use store::{key_text, parse_key, value_json, value_text, PublishedView, ViewEvent, ViewStore};

use crate::change::Change;
use crate::decode::Input;
use crate::engine::shop_rows::ShopSources;
use crate::engine::Deduplicator;

/// The SQL-maintained views and the source rows they are computed from.
pub struct SqlViews {
    catalog: cdcview_sql::Catalog,
    flow: Dataflow,
    sources: ShopSources,
    /// Records redelivered after they were applied are skipped, as the
    /// built-in engine skips them.
    dedup: Deduplicator,
    store: Arc<ViewStore>,
    /// The published rows of each of the dataflow's views, in its order.
    published: Vec<Arc<PublishedView>>,
    /// For each of the dataflow's views without a key, how many copies of
    /// each row it holds (which numbers their row ids).
    copies: Vec<Option<HashMap<Row, u64>>>,
    /// What the sources whose rows are kept are: a snapshot taken under
    /// other declarations does not fit them.
    fingerprint: String,
    /// Views may be added and dropped while running (every source's rows
    /// are kept); `None`: they may not.
    runtime: Option<RuntimeViews>,
}

/// What views added while running need: where they are kept across
/// restarts, the bounds on them, and where the API's requests arrive.
pub struct RuntimeViews {
    pub posted: PostedViews,
    pub limits: Limits,
    pub commands: std::sync::mpsc::Receiver<ViewCommand>,
}

/// A request of the API to the pipeline, which owns the views.
pub enum ViewCommand {
    Add { sql: String, reply: tokio::sync::oneshot::Sender<Result<ServedView, ChangeError>> },
    Drop { name: String, reply: tokio::sync::oneshot::Sender<Result<(), ChangeError>> },
}

/// The bounds on a view posted at run time.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The most views posted at run time.
    pub views: usize,
    /// The most rows a posted view may hold.
    pub rows: usize,
    /// The longest statement, in bytes.
    pub statement_bytes: usize,
}

/// Why a view could not be added or dropped, by who is to blame.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The statement is not one view this service can maintain.
    #[error("{0}")]
    Invalid(String),
    /// The name is taken, or the view is not one that can be dropped.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// A bound was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// Views cannot change at run time in this service.
    #[error("{0}")]
    Off(String),
}

/// The rows of the sources the SQL views read, as a snapshot holds them.
#[derive(Debug, Serialize, Deserialize)]
pub struct ViewsState {
    pub fingerprint: String,
    pub sources: Vec<(String, Vec<(Row, Row)>)>,
}

/// A source row with its primary key, as a snapshot writes it.
type KeyedRow<'a> = (cdcview_engine::key::Key, &'a [cdcview_engine::Value]);

/// [`ViewsState`]'s encoding written from the live dataflow, copying no row.
#[derive(Serialize)]
struct ViewsStateRef<'a> {
    fingerprint: &'a str,
    sources: Vec<(&'a str, Vec<KeyedRow<'a>>)>,
}

impl SqlViews {
    /// The dataflow of the views `declared` leaves to the SQL engine, bound
    /// to the topics this service reads; `None` when there are none and
    /// none may be added while running.
    pub fn new(
        declared: &Declared,
        topics: &[(String, Input)],
        store: Arc<ViewStore>,
        runtime: Option<RuntimeViews>,
    ) -> Result<Option<Self>, ViewsError> {
        let names: Vec<String> = declared.served.iter().filter(|v| !v.built_in).map(|v| v.name.clone()).collect();
        if names.is_empty() && runtime.is_none() {
            return Ok(None);
        }
        let mut flow = Dataflow::with_views(&declared.catalog.specs(), Some(&names));
        if runtime.is_some() {
            flow.keep_every_source();
        }
        let sources = ShopSources::bind(&flow, &declared.catalog, topics).map_err(ViewsError::Bind)?;
        let published: Vec<Arc<PublishedView>> =
            flow.views().iter().map(|v| store.get(&v.name).expect("the store lists every served view")).collect();
        let copies = published.iter().map(|v| v.info.row_id.then(HashMap::new)).collect();
        let fingerprint = declared.fingerprint(flow.read_sources().map(|(_, name)| name));
        Ok(Some(SqlViews {
            catalog: declared.catalog.clone(),
            flow,
            sources,
            dedup: Deduplicator::default(),
            store,
            published,
            copies,
            fingerprint,
            runtime,
        }))
    }

    /// Applies one batch of the pipeline's changes to every view; returns
    /// each changed view's row changes.
    pub fn apply(&mut self, changes: &[Change]) -> Vec<(Arc<PublishedView>, Vec<RowChange>)> {
        let mut source_changes = Vec::with_capacity(changes.len());
        for change in changes.iter().filter(|c| self.dedup.accept(c.pos)) {
            self.sources.changes(change.clone(), &mut source_changes);
        }
        if source_changes.is_empty() {
            return Vec::new();
        }
        self.apply_source_changes(source_changes)
    }

    fn apply_source_changes(&mut self, changes: Vec<SourceChange>) -> Vec<(Arc<PublishedView>, Vec<RowChange>)> {
        let outputs = self.flow.apply(changes);
        let mut changed_views = Vec::new();
        for ((view, copies), changed) in self.published.iter().zip(&mut self.copies).zip(outputs) {
            let changed = match copies {
                Some(copies) => with_row_ids(copies, changed),
                None => changed,
            };
            if !changed.is_empty() {
                view.apply(changed.clone());
                changed_views.push((Arc::clone(view), changed));
            }
        }
        changed_views
    }

    /// Every row of every view, as insertions (for a sink that rewrites
    /// its tables after a restore).
    pub fn all_rows(&self) -> Vec<(Arc<PublishedView>, Vec<RowChange>)> {
        self.published
            .iter()
            .map(|view| {
                let rows = view.rows.read();
                let inserts = rows.by_key.iter().map(|(key, row)| RowChange { key: key.clone(), before: None, after: Some(row.clone()) }).collect();
                (Arc::clone(view), inserts)
            })
            .collect()
    }

    /// The API's requests that arrived since the last call.
    pub fn commands(&self) -> Vec<ViewCommand> {
        self.runtime.as_ref().map(|r| r.commands.try_iter().collect()).unwrap_or_default()
    }

    /// Adds the materialized view `sql` declares, filled from the sources'
    /// current rows, and keeps it across restarts; returns it with its rows
    /// as insertions.
    pub fn add(&mut self, sql: &str) -> Result<(Arc<PublishedView>, Vec<RowChange>), ChangeError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| ChangeError::Off("views cannot be added while running: start with --runtime-views (CDCVIEW_RUNTIME_VIEWS=true)".into()))?;
        let limits = runtime.limits;
        if sql.len() > limits.statement_bytes {
            return Err(ChangeError::TooLarge(format!("the statement has {} bytes, more than the {} accepted", sql.len(), limits.statement_bytes)));
        }
        let statements = cdcview_sql::Catalog::statements(sql).map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let name = match statements.as_slice() {
            [Some((name, true))] => name.clone(),
            _ => return Err(ChangeError::Invalid("the body must be exactly one CREATE MATERIALIZED VIEW statement".into())),
        };
        if self.catalog.get(&name).is_some() {
            return Err(ChangeError::Conflict(format!("{name} is already declared")));
        }
        if runtime.posted.len() >= limits.views {
            return Err(ChangeError::TooLarge(format!("{} views were posted already, the most this service keeps (drop one first)", limits.views)));
        }
        let mut catalog = self.catalog.clone();
        catalog.load(sql).map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let relation = catalog.get(&name).expect("just declared");
        let info = declared::served(relation, false, true).map_err(|e| ChangeError::Invalid(e.to_string()))?;
        let mut rows = self.flow.add_view(&catalog.specs(), &name).map_err(ChangeError::Invalid)?;
        let mut copies = info.row_id.then(HashMap::new);
        if let Some(copies) = &mut copies {
            rows = with_row_ids(copies, rows);
        }
        if rows.len() > limits.rows {
            self.flow.drop_view(&name);
            return Err(ChangeError::TooLarge(format!("{name} would hold {} rows, more than the {} a posted view may", rows.len(), limits.rows)));
        }
        let view = Arc::new(PublishedView::new(info));
        view.apply(rows.clone());
        let runtime = self.runtime.as_mut().expect("checked above");
        runtime.posted.add(&name, sql);
        self.catalog = catalog;
        self.store.add(Arc::clone(&view));
        self.published.push(Arc::clone(&view));
        self.copies.push(copies);
        Ok((view, rows))
    }

    /// Drops a view posted at run time.
    pub fn drop_view(&mut self, name: &str) -> Result<(), ChangeError> {
        let runtime =
            self.runtime.as_mut().ok_or_else(|| ChangeError::Off("views cannot be dropped while running: start with --runtime-views".into()))?;
        if !runtime.posted.contains(name) {
            return Err(match self.catalog.get(name) {
                Some(_) => ChangeError::Conflict(format!("{name} is declared in the view files, not posted: remove it there")),
                None => ChangeError::NotFound(format!("no view named {name}")),
            });
        }
        let readers: Vec<&str> = self
            .catalog
            .relations()
            .iter()
            .filter(|r| matches!(&r.kind, cdcview_sql::Kind::View { plan, .. } if plan.reads().contains(&name)))
            .map(|r| r.name.as_str())
            .collect();
        if !readers.is_empty() {
            return Err(ChangeError::Conflict(format!("{name} is read by {}: drop that first", readers.join(", "))));
        }
        runtime.posted.remove(name);
        self.flow.drop_view(name);
        if let Some(at) = self.published.iter().position(|v| v.info.name == name) {
            self.published.remove(at);
            self.copies.remove(at);
        }
        self.store.remove(name);
        self.catalog = rebuild_without(&self.catalog, name);
        Ok(())
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
                let slice: Vec<SourceChange> =
                    rows.by_ref().take(100_000).map(|(key, row)| SourceChange { source, key: key.into(), after: Some(row.into()) }).collect();
                self.apply_source_changes(slice);
            }
        }
        Ok(restored)
    }
}

/// A keyless view's changes, one per copy of a row (the engine's counted
/// rows), as changes of rows with ids: the n-th copy of a row has the id
/// made from its values and n, so the same rows get the same ids after a
/// restart. A copy that goes is the row's last one.
fn with_row_ids(copies: &mut HashMap<Row, u64>, changes: Vec<RowChange>) -> Vec<RowChange> {
    let mut out = Vec::with_capacity(changes.len());
    for change in changes {
        match (change.before, change.after) {
            (None, Some(row)) => {
                let n = copies.entry(row.to_vec()).or_insert(0);
                *n += 1;
                let id = row_id(&row, *n);
                out.push(RowChange { key: Key::One(id.clone()), before: None, after: Some(with_id(id, row)) });
            }
            (Some(row), None) => {
                let Some(n) = copies.get_mut(&row[..]) else { continue };
                let id = row_id(&row, *n);
                *n -= 1;
                if *n == 0 {
                    copies.remove(&row[..]);
                }
                out.push(RowChange { key: Key::One(id.clone()), before: Some(with_id(id, row)), after: None });
            }
            // A keyless view changes copies, never rows in place.
            _ => {}
        }
    }
    out
}

/// 128 bits of SipHash-1-3 (fixed keys) over the row's encoding and its
/// copy number, as 32 hex digits: stable across runs and builds.
fn row_id(row: &[cdcview_engine::Value], copy: u64) -> cdcview_engine::Value {
    use std::hash::Hasher as _;
    let mut hasher = siphasher::sip128::SipHasher13::new_with_keys(0x6364_6376_6965_7700, 0x726f_775f_6964_0000);
    hasher.write(&postcard::to_stdvec(row).unwrap_or_default());
    hasher.write(&copy.to_le_bytes());
    let hash = siphasher::sip128::Hasher128::finish128(&hasher).as_u128();
    cdcview_engine::Value::text(&format!("{hash:032x}"))
}

fn with_id(id: cdcview_engine::Value, row: SharedRow) -> SharedRow {
    std::iter::once(id).chain(row.iter().cloned()).collect()
}

/// The catalog without one materialized view that nothing reads (a posted
/// one): the others, declared again in their order.
fn rebuild_without(catalog: &cdcview_sql::Catalog, name: &str) -> cdcview_sql::Catalog {
    let mut rebuilt = cdcview_sql::Catalog::new();
    for relation in catalog.relations().iter().filter(|r| r.name != name) {
        rebuilt.load(&relation.sql).expect("a statement the catalog accepted before loads again");
    }
    rebuilt
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
        let mut views = SqlViews::new(&declared, &shop_topics(), Arc::clone(&store), None).unwrap().expect("revenue_by_city is the SQL engine's");
        let mut workload = Workload::with_mix(Sizes { users: 60, orders: 200, items: 500, events: 100 }, 11, Mix::Churn);
        views.apply(&workload.initial());
        for _ in 0..steps / 100 {
            let batch: Vec<Change> = (0..100).map(|_| workload.next_change()).collect();
            views.apply(&batch);
        }
        (declared, views, store)
    }

    fn rows(store: &ViewStore, name: &str) -> BTreeMap<Row, Row> {
        store.get(name).unwrap().rows.read().by_key.iter().map(|(k, r)| (k.as_slice().to_vec(), r.to_vec())).collect()
    }

    #[test]
    fn the_store_holds_what_the_dataflow_computes_and_a_snapshot_rebuilds_it() {
        let (declared, views, store) = revenue_views(3000);
        let served: Vec<(&str, bool)> = declared.served.iter().map(|v| (v.name.as_str(), v.built_in)).collect();
        assert_eq!(served, [("order_details_mv", true), ("revenue_by_city", false)]);
        let flow_rows: BTreeMap<Row, Row> = {
            let v = &views.flow.views()[0];
            v.rows().map(|r| (v.key.as_ref().unwrap().iter().map(|&k| r[k].clone()).collect(), r.to_vec())).collect()
        };
        let published = rows(&store, "revenue_by_city");
        assert!(published.len() > 3, "the workload spreads users over cities");
        assert_eq!(published, flow_rows);

        let bytes = postcard::to_stdvec(&views.state()).unwrap();
        let state: ViewsState = postcard::from_bytes(&bytes).unwrap();
        let fresh = Arc::new(ViewStore::new(&declared.served));
        let mut restored = SqlViews::new(&declared, &shop_topics(), Arc::clone(&fresh), None).unwrap().unwrap();
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
        let Err(e) = SqlViews::new(&declared, &shop_topics(), Arc::default(), None) else { panic!("bound an unknown topic") };
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
            let Err(e) = SqlViews::new(&declared, &shop_topics(), Arc::default(), None) else { panic!("bound {source}") };
            assert!(e.to_string().contains(expected), "{e} (expected {expected})");
        }
    }

    const CITY_ORDERS: &str = "CREATE MATERIALIZED VIEW city_orders AS
        SELECT a.city, COUNT(*) AS orders, SUM(o.total) AS total FROM orders o JOIN addresses a ON a.user_id = o.user_id GROUP BY a.city";

    fn runtime(dir: &std::path::Path, limits: Limits) -> (SqlViews, Arc<ViewStore>, std::sync::mpsc::Sender<ViewCommand>) {
        let posted = PostedViews::load(Some(dir.to_path_buf())).unwrap();
        let declared = Declared::load_with_posted(&[PathBuf::from("views/shop.sql")], posted.views()).unwrap();
        let store = Arc::new(ViewStore::new(&declared.served));
        let (tx, rx) = std::sync::mpsc::channel();
        let runtime = RuntimeViews { posted, limits, commands: rx };
        (SqlViews::new(&declared, &shop_topics(), Arc::clone(&store), Some(runtime)).unwrap().unwrap(), store, tx)
    }

    /// The same view compiled from the start and fed every change.
    fn from_the_start(changes: &[Change]) -> BTreeMap<Row, Row> {
        view_from_the_start(CITY_ORDERS, "city_orders", 1, changes)
    }

    fn view_from_the_start(sql: &str, name: &str, key_len: usize, changes: &[Change]) -> BTreeMap<Row, Row> {
        let mut catalog = cdcview_sql::Catalog::new();
        catalog.load(include_str!("../../views/shop.sql")).unwrap();
        catalog.load(sql).unwrap();
        let mut flow = Dataflow::with_views(&catalog.specs(), Some(&[name.to_string()]));
        let sources = ShopSources::of(&flow).unwrap();
        let mut dedup = Deduplicator::default();
        let mut source_changes = Vec::new();
        for c in changes.iter().filter(|c| dedup.accept(c.pos)) {
            sources.changes(c.clone(), &mut source_changes);
        }
        flow.apply(source_changes);
        flow.views()[0].rows().map(|r| (r[..key_len].to_vec(), r.to_vec())).collect()
    }

    #[test]
    fn a_posted_left_join_group_by_follows_renames_and_deletes() {
        let sql = "CREATE MATERIALIZED VIEW user_orders AS
            SELECT u.user_id, u.name, COUNT(o.order_id) AS orders, COALESCE(SUM(o.total), 0.00) AS spent, MAX(o.order_id) AS newest_order
            FROM users u LEFT JOIN orders o ON o.user_id = u.user_id GROUP BY u.user_id, u.name";
        for seed in 0..20 {
            let dir = std::env::temp_dir().join(format!("cdcview-posted-lj-test-{}-{seed}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (mut views, store, _tx) = runtime(&dir, Limits { views: 4, rows: 100_000, statement_bytes: 4096 });
            let mut workload = Workload::with_mix(Sizes { users: 30, orders: 100, items: 50, events: 10 }, seed, Mix::Churn);
            let mut seen = workload.initial();
            views.apply(&seen);
            views.add(sql).unwrap();
            for step in 0..30 {
                let batch: Vec<Change> = (0..50).map(|_| workload.next_change()).collect();
                views.apply(&batch);
                seen.extend(batch);
                let served = rows(&store, "user_orders");
                assert!(served.keys().all(|k| !k[0].is_null()), "seed {seed} step {step}: a NULL user_id");
                assert_eq!(served, view_from_the_start(sql, "user_orders", 2, &seen), "seed {seed} step {step}");
            }
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    const LIMITS: Limits = Limits { views: 2, rows: 1_000, statement_bytes: 4096 };

    #[test]
    fn a_posted_view_starts_from_the_current_rows_goes_on_and_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("cdcview-posted-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut views, store, _tx) = runtime(&dir, LIMITS);
        let mut workload = Workload::with_mix(Sizes { users: 40, orders: 150, items: 300, events: 50 }, 3, Mix::Churn);
        let mut seen = workload.initial();
        views.apply(&seen);
        let (view, inserted) = views.add(CITY_ORDERS).unwrap();
        assert_eq!(view.info.key, [0]);
        assert!(view.info.posted && !view.info.built_in);
        assert_eq!(inserted.len(), from_the_start(&seen).len());
        assert_eq!(rows(&store, "city_orders"), from_the_start(&seen), "filled from the sources' rows");
        for _ in 0..10 {
            let batch: Vec<Change> = (0..100).map(|_| workload.next_change()).collect();
            views.apply(&batch);
            seen.extend(batch);
        }
        assert_eq!(rows(&store, "city_orders"), from_the_start(&seen), "then maintained");
        // A restart serves it again: declared from the posted file, rebuilt
        // from the snapshot's source rows.
        let state: ViewsState = postcard::from_bytes(&postcard::to_stdvec(&views.state()).unwrap()).unwrap();
        let (mut again, again_store, _tx) = runtime(&dir, LIMITS);
        again.restore(state).unwrap();
        assert_eq!(rows(&again_store, "city_orders"), from_the_start(&seen));
        // Dropped: gone from the store, the dataflow and the file.
        again.drop_view("city_orders").unwrap();
        assert!(again_store.get("city_orders").is_none());
        assert!(PostedViews::load(Some(dir.clone())).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn posting_and_dropping_views_is_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("cdcview-posted-refused-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut views, _store, _tx) = runtime(&dir, LIMITS);
        let mut workload = Workload::with_mix(Sizes { users: 40, orders: 1_500, items: 300, events: 50 }, 3, Mix::Steady);
        views.apply(&workload.initial());
        let err = |r: Result<(Arc<PublishedView>, Vec<RowChange>), ChangeError>| r.err().expect("refused");
        assert!(matches!(err(views.add("CREATE MATERIALIZED VIEW order_details_mv AS SELECT order_id FROM orders")), ChangeError::Conflict(_)));
        assert!(matches!(err(views.add("CREATE VIEW v AS SELECT order_id FROM orders")), ChangeError::Invalid(_)));
        assert!(matches!(err(views.add(&format!("{CITY_ORDERS}; {CITY_ORDERS}"))), ChangeError::Invalid(_)));
        let ChangeError::Invalid(m) = err(views.add("CREATE MATERIALIZED VIEW v AS SELECT nope FROM orders")) else { panic!() };
        assert!(m.contains("line 1, column 38: no column nope"), "{m}");
        let ChangeError::TooLarge(m) = err(views.add("CREATE MATERIALIZED VIEW every_order AS SELECT order_id, total FROM orders")) else { panic!() };
        assert!(m.contains("1500 rows, more than the 1000"), "{m}");
        assert!(matches!(err(views.add(&format!("{CITY_ORDERS} {}", " ".repeat(5000)))), ChangeError::TooLarge(_)));
        assert!(matches!(views.drop_view("order_details_mv"), Err(ChangeError::Conflict(_))));
        assert!(matches!(views.drop_view("nope"), Err(ChangeError::NotFound(_))));
        views.add(CITY_ORDERS).unwrap();
        views.add("CREATE MATERIALIZED VIEW big_orders AS SELECT c.city, c.orders FROM city_orders c WHERE c.orders > 1").unwrap();
        assert!(matches!(views.drop_view("city_orders"), Err(ChangeError::Conflict(m)) if m.contains("read by big_orders")));
        assert!(matches!(
            err(views.add("CREATE MATERIALIZED VIEW third AS SELECT order_id FROM orders WHERE order_id < 3")),
            ChangeError::TooLarge(_)
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_keyless_views_rows_get_ids_that_a_restart_gives_again() {
        let dir = std::env::temp_dir().join(format!("cdcview-keyless-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut views, store, _tx) = runtime(&dir, Limits { views: 4, rows: 100_000, statement_bytes: 4096 });
        let mut workload = Workload::with_mix(Sizes { users: 30, orders: 100, items: 200, events: 80 }, 9, Mix::Churn);
        views.apply(&workload.initial());
        // Equal rows many times over: each status once per event.
        views.add("CREATE MATERIALIZED VIEW statuses AS SELECT status FROM order_updates").unwrap();
        for _ in 0..5 {
            let batch: Vec<Change> = (0..100).map(|_| workload.next_change()).collect();
            views.apply(&batch);
        }
        let served = rows(&store, "statuses");
        let events = views.flow.source_rows(views.flow.source("order_updates").unwrap()).count();
        assert!(events > 50, "{events} events");
        assert_eq!(served.len(), events, "one row per event, equal statuses included");
        let mut distinct: Vec<&Row> = served.values().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), served.len(), "every copy has its own id");
        let state: ViewsState = postcard::from_bytes(&postcard::to_stdvec(&views.state()).unwrap()).unwrap();
        let (mut again, again_store, _tx) = runtime(&dir, Limits { views: 4, rows: 100_000, statement_bytes: 4096 });
        again.restore(state).unwrap();
        assert_eq!(rows(&again_store, "statuses"), served, "the same ids after a restart");
        let _ = std::fs::remove_dir_all(dir);
    }
}
