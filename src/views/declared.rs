//! Loading the view declarations: the `.sql` files, what each materialized
//! view serves, and which engine maintains it.

use std::path::{Path, PathBuf};

use cdcview_engine::plan::Column;
use cdcview_sql::{Catalog, Kind, Relation, SqlError};

/// The shop's declarations as shipped: an `order_details_mv` declared the
/// same way is the built-in view's.
const SHIPPED_SHOP: &str = include_str!("../../views/shop.sql");
const BUILT_IN_VIEW: &str = "order_details_mv";

#[derive(Debug, thiserror::Error)]
pub enum ViewsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Files(String),
    /// A statement refused, located as `FILE:LINE:COLUMN: message`.
    #[error("{0}")]
    Sql(String),
    /// A view that cannot be served as declared.
    #[error("{0}")]
    View(String),
    /// A source that cannot be read from the topics this service consumes.
    #[error("{0}")]
    Bind(String),
}

/// A materialized view as served.
#[derive(Clone, Debug)]
pub struct ServedView {
    pub name: String,
    pub columns: Vec<Column>,
    /// Key columns: at most one row per key.
    pub key: Vec<usize>,
    /// Maintained by the built-in engine (`order_details_mv` as shipped).
    pub built_in: bool,
    /// Added at run time (`POST /views`), not declared in the view files.
    pub posted: bool,
    /// The view has no key: its rows are served with a row id, [`ROW_ID`].
    pub row_id: bool,
    /// What `cdcview explain` prints for it: columns, key, plan.
    pub explain: String,
}

/// The column a view without a key is served with, first: an id made from
/// each row's values and its place among equal rows.
pub const ROW_ID: &str = "_row_id";

/// A materialized view as served: with its key, or, without one, with an
/// internal row id as its first column and key.
pub fn served(relation: &Relation, built_in: bool, posted: bool) -> Result<ServedView, ViewsError> {
    let (columns, key, row_id) = match &relation.key {
        Some(key) => (relation.columns.clone(), key.clone(), false),
        None => {
            if relation.columns.iter().any(|c| c.name == ROW_ID) {
                return Err(ViewsError::View(format!(
                    "view {} has no key and a column named {ROW_ID}, the name of the row id it would get",
                    relation.name
                )));
            }
            let mut columns = vec![Column { name: ROW_ID.into(), ty: cdcview_engine::types::SqlType::Text, nullable: false }];
            columns.extend(relation.columns.iter().cloned());
            (columns, vec![0], true)
        }
    };
    Ok(ServedView { name: relation.name.clone(), columns, key, built_in, posted, row_id, explain: relation.explain() })
}

/// Every declared source and view, and the materialized views to serve.
pub struct Declared {
    pub catalog: Catalog,
    pub served: Vec<ServedView>,
}

impl Declared {
    /// Loads `paths` (files, or folders whose `.sql` files load in name
    /// order), all statements of all files into one catalog.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ViewsError> {
        Self::load_with_posted(paths, &[])
    }

    /// [`Self::load`], then the views posted in earlier runs.
    pub fn load_with_posted(paths: &[PathBuf], posted: &[(String, String)]) -> Result<Self, ViewsError> {
        let mut catalog = Catalog::new();
        for file in sql_files(paths)? {
            let text = std::fs::read_to_string(&file).map_err(|source| ViewsError::Read { path: file.clone(), source })?;
            catalog.load(&text).map_err(|e| ViewsError::Sql(located(&file, &text, &e)))?;
        }
        Self::with_posted(catalog, posted)
    }

    pub fn from_catalog(catalog: Catalog) -> Result<Self, ViewsError> {
        Self::with_posted(catalog, &[])
    }

    /// The declarations, then the views posted in earlier runs (`posted`:
    /// name and statement, in the order they were posted). A posted view
    /// that no longer loads (the files changed under it) is left out, with
    /// a warning.
    pub fn with_posted(mut catalog: Catalog, posted_views: &[(String, String)]) -> Result<Self, ViewsError> {
        let mut posted = Vec::new();
        for (name, sql) in posted_views {
            match catalog.load(sql) {
                Ok(_) => posted.push(name.clone()),
                Err(e) => tracing::warn!(view = %name, error = %e, "a view posted in an earlier run no longer loads; it is left out"),
            }
        }
        let shipped = shipped();
        let mut served = Vec::new();
        for relation in catalog.relations().iter().filter(|r| r.is_materialized()) {
            let built_in = relation.name == BUILT_IN_VIEW && same_definition(&catalog, &shipped, BUILT_IN_VIEW);
            if relation.name == BUILT_IN_VIEW && !built_in {
                tracing::warn!(
                    view = BUILT_IN_VIEW,
                    "order_details_mv is declared differently from views/shop.sql as shipped: /views/order_details_mv serves this declaration \
                     (SQL engine); /order_details_mv and the PostgreSQL table keep the built-in view"
                );
            }
            served.push(self::served(relation, built_in, posted.contains(&relation.name))?);
        }
        Ok(Declared { catalog, served })
    }

    /// What the named sources are (columns, types, key, topic): a snapshot's
    /// source rows fit these declarations only if this is unchanged.
    pub fn fingerprint<'a>(&self, sources: impl Iterator<Item = &'a str>) -> String {
        let mut out = String::new();
        for name in sources {
            if let Some(r) = self.catalog.get(name) {
                let topic = match &r.kind {
                    Kind::Source(s) => s.topic.as_str(),
                    Kind::View { .. } => "",
                };
                let columns: Vec<String> = r.columns.iter().map(|c| format!("{} {} {}", c.name, c.ty, c.nullable)).collect();
                out.push_str(&format!("{name}@{topic}({}) key {:?};", columns.join(", "), r.key));
            }
        }
        out
    }
}

fn shipped() -> Catalog {
    let mut catalog = Catalog::new();
    catalog.load(SHIPPED_SHOP).expect("views/shop.sql as shipped loads (tests/sql_view.rs)");
    catalog
}

/// Whether `name` reads the same relations, declared the same way, in both
/// catalogs, all the way down to the sources.
fn same_definition(a: &Catalog, b: &Catalog, name: &str) -> bool {
    let (Some(x), Some(y)) = (a.get(name), b.get(name)) else { return false };
    let source_topic_free = |k: &Kind| match k {
        Kind::Source(_) => None,
        Kind::View { plan, materialized } => Some((plan.clone(), *materialized)),
    };
    if x.columns != y.columns || x.key != y.key || source_topic_free(&x.kind) != source_topic_free(&y.kind) {
        return false;
    }
    match &x.kind {
        Kind::Source(_) => true,
        Kind::View { plan, .. } => plan.reads().into_iter().all(|read| same_definition(a, b, read)),
    }
}

/// The `.sql` files of `paths`, folders expanded in name order.
pub fn sql_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ViewsError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|source| ViewsError::Read { path: path.clone(), source })?;
            let mut found: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "sql")).collect();
            found.sort();
            if found.is_empty() {
                return Err(ViewsError::Files(format!("no .sql files in {}", path.display())));
            }
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(ViewsError::Files(format!("{} does not exist (give a .sql file or a folder of them)", path.display())));
        }
    }
    Ok(files)
}

/// `FILE:LINE:COLUMN: message`, then the line with a caret under the column.
pub fn located(file: &Path, text: &str, e: &SqlError) -> String {
    let mut out = format!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
    if let Some(line) = text.lines().nth((e.line as usize).saturating_sub(1)).filter(|_| e.line > 0) {
        out.push_str(&format!("\n    {line}\n    {}^", " ".repeat((e.column as usize).saturating_sub(1))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(extra: &str) -> Result<Declared, ViewsError> {
        let mut catalog = Catalog::new();
        catalog.load(SHIPPED_SHOP).unwrap();
        catalog.load(extra).map_err(|e| ViewsError::Sql(e.to_string()))?;
        Declared::from_catalog(catalog)
    }

    #[test]
    fn the_shipped_order_details_mv_is_the_built_in_view() {
        let d = declared("").unwrap();
        assert_eq!(d.served.len(), 1);
        assert!(d.served[0].built_in);
        assert_eq!(d.served[0].columns.len(), 13);
    }

    #[test]
    fn a_changed_view_under_it_leaves_order_details_mv_to_the_sql_engine() {
        // Same name, another rule for the newest address: not the built-in view's rows.
        let mut catalog = Catalog::new();
        let changed = SHIPPED_SHOP.replace("ORDER BY user_id, address_id DESC", "ORDER BY user_id, address_id ASC");
        assert_ne!(changed, SHIPPED_SHOP);
        catalog.load(&changed).unwrap();
        let d = Declared::from_catalog(catalog).unwrap();
        assert!(!d.served[0].built_in);
    }

    #[test]
    fn a_view_without_a_key_is_served_with_a_row_id() {
        let d = declared("CREATE MATERIALIZED VIEW names AS SELECT name FROM users;").unwrap();
        let names = &d.served[1];
        assert!(names.row_id);
        assert_eq!(names.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["_row_id", "name"]);
        assert_eq!(names.key, [0]);
    }

    #[test]
    fn the_fingerprint_changes_with_a_source_column() {
        let a = declared("").unwrap();
        let mut catalog = Catalog::new();
        catalog.load(&SHIPPED_SHOP.replace("    phone TEXT\n", "    phone TEXT NOT NULL\n")).unwrap();
        let b = Declared::from_catalog(catalog).unwrap();
        let users = || std::iter::once("users");
        assert_ne!(a.fingerprint(users()), b.fingerprint(users()));
        assert_eq!(a.fingerprint(std::iter::once("orders")), b.fingerprint(std::iter::once("orders")));
    }
}
