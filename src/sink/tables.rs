//! PostgreSQL tables of the SQL-maintained views: one table per view, named
//! after it, its columns with their SQL types, its key as primary key.
//!
//! Each table carries a comment with its definition; a table whose comment
//! differs (the view was declared anew) is dropped and created again, and
//! the sink then rewrites every table from the view.

use std::collections::BTreeMap;

use cdcview_engine::types::SqlType;
use cdcview_engine::{Key, SharedRow, Value};
use tokio_postgres::GenericClient;

use crate::error::SinkError;
use crate::views::ServedView;

/// A view's changes waiting to be written: the newest row of each key
/// changed, `None` for deleted.
pub type PendingRows = BTreeMap<Key, Option<SharedRow>>;

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn pg_type(ty: SqlType) -> &'static str {
    match ty {
        SqlType::Bool => "boolean",
        SqlType::Int => "bigint",
        SqlType::Decimal { .. } => "numeric",
        SqlType::Double => "double precision",
        SqlType::Text => "text",
        SqlType::Timestamp => "timestamptz",
    }
}

/// What the table's comment holds: its definition, so that a view
/// declared anew gets a new table.
fn definition(view: &ServedView) -> String {
    let columns: Vec<String> =
        view.columns.iter().map(|c| format!("{} {}{}", c.name, pg_type(c.ty), if c.nullable { "" } else { " NOT NULL" })).collect();
    let key: Vec<&str> = view.key.iter().map(|&k| view.columns[k].name.as_str()).collect();
    format!("cdcview view {}: ({}) key ({})", view.name, columns.join(", "), key.join(", "))
}

fn create_statement(view: &ServedView) -> String {
    let mut columns: Vec<String> =
        view.columns.iter().map(|c| format!("{} {}{}", ident(&c.name), pg_type(c.ty), if c.nullable { "" } else { " NOT NULL" })).collect();
    let key: Vec<String> = view.key.iter().map(|&k| ident(&view.columns[k].name)).collect();
    // A key column that may be NULL (a GROUP BY over a nullable column)
    // cannot be in a primary key: a unique key that treats NULLs as equal.
    if view.key.iter().all(|&k| !view.columns[k].nullable) {
        columns.push(format!("PRIMARY KEY ({})", key.join(", ")));
    } else {
        columns.push(format!("UNIQUE NULLS NOT DISTINCT ({})", key.join(", ")));
    }
    format!("CREATE TABLE {} ({})", ident(&view.name), columns.join(", "))
}

/// Creates each view's table, or creates it again when its definition
/// changed. Returns whether every table was already there as defined.
pub async fn ensure(client: &impl GenericClient, views: &[&ServedView]) -> Result<bool, SinkError> {
    let mut all_there = true;
    for view in views {
        let comment: Option<String> = client
            .query_opt("SELECT obj_description(to_regclass($1), 'pg_class')", &[&ident(&view.name)])
            .await?
            .and_then(|row| row.get::<_, Option<String>>(0));
        let wanted = definition(view);
        if comment.as_deref() == Some(wanted.as_str()) {
            continue;
        }
        all_there = false;
        tracing::info!(view = %view.name, "creating the view's PostgreSQL table");
        let quoted = ident(&view.name);
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {quoted}; {}; COMMENT ON TABLE {quoted} IS '{}'",
                create_statement(view),
                wanted.replace('\'', "''")
            ))
            .await?;
    }
    Ok(all_there)
}

/// A value as PostgreSQL reads it back from text, cast to the column's type.
fn pg_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Double(f) if f.is_infinite() => Some(if *f > 0.0 { "Infinity" } else { "-Infinity" }.into()),
        Value::Double(f) => Some(f.to_string()),
        other => crate::views::value_text(other),
    }
}

/// Writes one view's pending changes: deletes, then a multi-row upsert.
pub async fn write(tx: &impl GenericClient, view: &ServedView, rows: &PendingRows) -> Result<(), SinkError> {
    let table = ident(&view.name);
    let cast = |c: usize, expr: String| format!("{expr}::{}", pg_type(view.columns[c].ty));
    let deleted: Vec<&[Value]> = rows.iter().filter(|(_, r)| r.is_none()).map(|(k, _)| k.as_slice()).collect();
    if !deleted.is_empty() {
        let params: Vec<Vec<Option<String>>> = (0..view.key.len()).map(|i| deleted.iter().map(|k| pg_text(&k[i])).collect()).collect();
        let names: Vec<String> = (0..view.key.len()).map(|i| format!("k{i}")).collect();
        let arrays: Vec<String> = (1..=view.key.len()).map(|i| format!("${i}::text[]")).collect();
        let matches: Vec<String> = view
            .key
            .iter()
            .enumerate()
            .map(|(i, &c)| format!("t.{} IS NOT DISTINCT FROM {}", ident(&view.columns[c].name), cast(c, format!("d.k{i}"))))
            .collect();
        let sql = format!("DELETE FROM {table} t USING unnest({}) AS d({}) WHERE {}", arrays.join(", "), names.join(", "), matches.join(" AND "));
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        tx.execute(&sql, &refs).await?;
    }
    let upserted: Vec<&SharedRow> = rows.values().filter_map(Option::as_ref).collect();
    for chunk in upserted.chunks(super::CHUNK) {
        let params: Vec<Vec<Option<String>>> = (0..view.columns.len()).map(|c| chunk.iter().map(|r| pg_text(&r[c])).collect()).collect();
        let names: Vec<String> = view.columns.iter().map(|c| ident(&c.name)).collect();
        let arrays: Vec<String> = (1..=view.columns.len()).map(|i| format!("${i}::text[]")).collect();
        let values: Vec<String> = (0..view.columns.len()).map(|c| cast(c, format!("r.c{c}"))).collect();
        let aliases: Vec<String> = (0..view.columns.len()).map(|c| format!("c{c}")).collect();
        let key: Vec<String> = view.key.iter().map(|&k| ident(&view.columns[k].name)).collect();
        let set: Vec<String> = (0..view.columns.len()).filter(|c| !view.key.contains(c)).map(|c| format!("{0} = EXCLUDED.{0}", names[c])).collect();
        let conflict = if set.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", set.join(", ")) };
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT {} FROM unnest({}) AS r({}) ON CONFLICT ({}) {conflict}",
            names.join(", "),
            values.join(", "),
            arrays.join(", "),
            aliases.join(", "),
            key.join(", ")
        );
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params.iter().map(|p| p as _).collect();
        tx.execute(&sql, &refs).await?;
    }
    Ok(())
}

pub async fn drop(tx: &impl GenericClient, name: &str) -> Result<(), SinkError> {
    tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", ident(name))).await?;
    Ok(())
}

pub async fn truncate(tx: &impl GenericClient, view: &ServedView) -> Result<(), SinkError> {
    tx.execute(&format!("TRUNCATE {}", ident(&view.name)), &[]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use cdcview_engine::plan::Column;
    use cdcview_engine::Row;

    use super::*;

    /// A view keyed by two columns, one of them nullable (a GROUP BY over
    /// a nullable column), with every type.
    fn view(name: &str) -> ServedView {
        let column = |name: &str, ty, nullable| Column { name: name.into(), ty, nullable };
        ServedView {
            name: name.into(),
            columns: vec![
                column("country", SqlType::Text, false),
                column("city", SqlType::Text, true),
                column("orders", SqlType::Int, false),
                column("revenue", SqlType::Decimal { scale: Some(2) }, false),
                column("share", SqlType::Double, true),
                column("active", SqlType::Bool, true),
                column("last_order", SqlType::Timestamp, true),
            ],
            key: vec![0, 1],
            built_in: false,
            posted: false,
            row_id: false,
            explain: String::new(),
        }
    }

    fn row(country: &str, city: Option<&str>, orders: i64, revenue: &str) -> Row {
        vec![
            Value::text(country),
            city.map_or(Value::Null, Value::text),
            Value::Int(orders),
            Value::Decimal(revenue.parse().unwrap()),
            Value::Double(0.25),
            Value::Bool(true),
            Value::Timestamp(1_700_000_000_123_456),
        ]
    }

    async fn table_rows(client: &tokio_postgres::Client, name: &str) -> Vec<String> {
        let sql = format!(
            "SELECT concat_ws('|', country, coalesce(city, '<null>'), orders, revenue, share, active, extract(epoch FROM last_order)) FROM {} ORDER BY 1",
            ident(name)
        );
        client.query(&sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL (CDCVIEW_PG_URL): scripts/test.sh"]
    async fn a_views_table_follows_its_changes_with_faithful_types() {
        let url = std::env::var("CDCVIEW_PG_URL").unwrap_or_else(|_| "postgres://cdcview:cdcview@127.0.0.1:5433/cdcview".into());
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("PostgreSQL of the stack is reachable");
        tokio::spawn(conn);
        let name = format!("cdcview_test_view_{}", std::process::id());
        let v = view(&name);
        assert!(!ensure(&client, &[&v]).await.unwrap(), "a new table is created");
        assert!(ensure(&client, &[&v]).await.unwrap(), "and found as defined the next time");
        let mut changes = PendingRows::new();
        for r in [row("FR", Some("Paris"), 3, "10.50"), row("FR", None, 1, "0.00"), row("US", Some("Paris, TX"), 2, "-3.10")] {
            changes.insert(r[..2].into(), Some(r.into()));
        }
        write(&client, &v, &changes).await.unwrap();
        let mut changes = PendingRows::new();
        changes.insert(vec![Value::text("FR"), Value::Null].into(), None);
        let updated = row("FR", Some("Paris"), 4, "12.00");
        changes.insert(updated[..2].into(), Some(updated.into()));
        write(&client, &v, &changes).await.unwrap();
        assert_eq!(table_rows(&client, &name).await, ["FR|Paris|4|12.00|0.25|t|1700000000.123456", "US|Paris, TX|2|-3.10|0.25|t|1700000000.123456"]);
        // Declared anew (another column): the table is created again.
        let mut changed = view(&name);
        changed.columns[2].ty = SqlType::Decimal { scale: None };
        assert!(!ensure(&client, &[&changed]).await.unwrap());
        assert!(table_rows(&client, &name).await.is_empty());
        client.batch_execute(&format!("DROP TABLE {}", ident(&name))).await.unwrap();
    }
}
