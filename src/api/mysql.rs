//! Endpoints read from MySQL at request time: the raw tables, and the naive
//! `order_details` query, which is both the benchmark baseline and the oracle
//! the materialized view must equal. All SQL is parameterised.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::Json;
use mysql_async::prelude::*;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::error::ErrorBody;
use super::params::Params;
use super::{ApiError, AppState};
use crate::change::Timestamp;
use crate::engine::OrderDetails;

#[derive(Clone, Copy)]
enum Col {
    Int,
    Text,
    Money,
    Time,
}

/// The naive view: one query joining everything at read time. Status events
/// live only in Kafka, so this path knows each order's own status only.
/// Followed by one of the WHERE clauses below: one statement per filter
/// shape, so that MariaDB plans each for what it is (a single statement with
/// `(? IS NULL OR o.user_id = ?)` was planned, on one machine, as a scan of
/// `users` into a temporary table and a sort: 2 s a page with 112k orders).
pub const ORDER_DETAILS_SQL: &str = "
SELECT o.order_id, o.user_id, CAST(o.total AS CHAR), UNIX_TIMESTAMP(o.order_date),
       u.name, u.email, u.phone,
       (SELECT CONCAT_WS(', ', a.street, a.city, a.state, a.postal_code, a.country)
          FROM addresses a WHERE a.user_id = u.user_id ORDER BY a.address_id DESC LIMIT 1),
       (SELECT GROUP_CONCAT(CONCAT(i.name, ' (Qty: ', i.quantity, ', Price: ', i.price, ', Total: ', i.quantity * i.price, ')')
                            ORDER BY i.id SEPARATOR ' | ')
          FROM order_items i WHERE i.order_id = o.order_id),
       (SELECT COUNT(*) FROM order_items i WHERE i.order_id = o.order_id),
       (SELECT CAST(COALESCE(SUM(i.quantity * i.price), 0) AS CHAR) FROM order_items i WHERE i.order_id = o.order_id),
       o.order_status, UNIX_TIMESTAMP(o.updated_date)
  FROM orders o JOIN users u ON u.user_id = o.user_id";

/// Every order after the cursor: a range of the primary key.
pub const ORDER_DETAILS_PAGE: &str = " WHERE o.order_id > ? ORDER BY o.order_id LIMIT ?";

/// One user's orders after the cursor: the `user_id` index (its entries
/// are ordered by order id within a user).
pub const ORDER_DETAILS_BY_USER: &str = " WHERE o.user_id = ? AND o.order_id > ? ORDER BY o.order_id LIMIT ?";

const ORDER_DETAILS_COLS: [(&str, Col); 13] = [
    ("order_id", Col::Int),
    ("user_id", Col::Int),
    ("total", Col::Money),
    ("order_date", Col::Time),
    ("user_name", Col::Text),
    ("user_email", Col::Text),
    ("user_phone", Col::Text),
    ("full_address", Col::Text),
    ("order_items_details", Col::Text),
    ("item_count", Col::Int),
    ("items_total", Col::Money),
    ("order_status", Col::Text),
    ("last_order_update", Col::Time),
];

/// Session settings every pooled connection gets: UTC, and room for long item lists.
pub const SESSION_INIT: [&str; 2] = ["SET time_zone = '+00:00'", "SET SESSION group_concat_max_len = 16777216"];

pub fn pool(url: &str) -> Result<mysql_async::Pool, mysql_async::UrlError> {
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(url)?).init(SESSION_INIT.to_vec());
    Ok(mysql_async::Pool::new(opts))
}

fn to_json(row: mysql_async::Row, cols: &[(&str, Col)]) -> Map<String, Value> {
    let mut out = Map::new();
    for (i, (name, kind)) in cols.iter().enumerate() {
        let v: Option<mysql_async::Value> = row.get(i);
        let v = match v {
            None | Some(mysql_async::Value::NULL) => Value::Null,
            Some(v) => cell(v, *kind),
        };
        out.insert((*name).to_string(), v);
    }
    out
}

fn cell(v: mysql_async::Value, kind: Col) -> Value {
    let text = || match &v {
        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.as_sql(true).trim_matches('\'').to_string(),
    };
    match kind {
        Col::Int => text().parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        Col::Text => Value::String(text()),
        Col::Money => text()
            .parse::<Decimal>()
            .map(|mut d| {
                d.rescale(2);
                Value::String(d.to_string())
            })
            .unwrap_or(Value::Null),
        Col::Time => text().parse::<f64>().map(|s| Value::String(Timestamp::from_unix_seconds(s).to_rfc3339())).unwrap_or(Value::Null),
    }
}

async fn conn(state: &AppState) -> Result<mysql_async::Conn, ApiError> {
    let pool = state.mysql.as_ref().ok_or_else(|| ApiError::Unavailable("MySQL is not configured (set CDCVIEW_MYSQL_URL)".into()))?;
    pool.get_conn().await.map_err(|e| {
        tracing::warn!(error = %e, "MySQL connection failed");
        ApiError::Unavailable("MySQL is unreachable".into())
    })
}

fn query_failed(e: mysql_async::Error) -> ApiError {
    tracing::warn!(error = %e, "MySQL query failed");
    ApiError::Unavailable("the MySQL query failed".into())
}

/// The naive path: the same view computed by one SQL query in MySQL at read
/// time (each order's own status; status events live only in Kafka).
#[utoipa::path(get, path = "/order_details", tag = "naive",
    params(
        ("user_id" = Option<i64>, Query, description = "only this user's orders"),
        ("after" = Option<i64>, Query, description = "cursor: only order_ids greater than this"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 1000", minimum = 1, maximum = 1000, example = 100),
    ),
    responses(
        (status = 200, description = "rows, by ascending order_id", body = [OrderDetails]),
        (status = 400, description = "a bad or unknown parameter", body = ErrorBody),
        (status = 503, description = "MySQL is unreachable or not configured", body = ErrorBody),
    ))]
pub async fn order_details(
    State(state): State<AppState>,
    Query(raw): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Map<String, Value>>>, ApiError> {
    let p = Params::new(raw, &["user_id", "after", "limit"])?;
    let user_id = p.int("user_id", 0, i64::MAX)?;
    let after = p.int("after", i64::MIN, i64::MAX)?.unwrap_or(i64::MIN);
    let limit = p.limit()?;
    let mut conn = conn(&state).await?;
    let rows: Vec<mysql_async::Row> = match user_id {
        None => conn.exec([ORDER_DETAILS_SQL, ORDER_DETAILS_PAGE].concat(), (after, limit)).await,
        Some(user) => conn.exec([ORDER_DETAILS_SQL, ORDER_DETAILS_BY_USER].concat(), (user, after, limit)).await,
    }
    .map_err(query_failed)?;
    Ok(Json(rows.into_iter().map(|r| to_json(r, &ORDER_DETAILS_COLS)).collect()))
}

/// One page of a raw table, by ascending primary key, in the reference stack's shape.
async fn table_page(
    state: &AppState,
    raw: HashMap<String, String>,
    table: &str,
    key: &str,
    cols: &[(&str, Col)],
    wrapper: &str,
) -> Result<Json<Value>, ApiError> {
    let p = Params::new(raw, &["after", "limit"])?;
    let after = p.int("after", i64::MIN, i64::MAX)?.unwrap_or(i64::MIN);
    let limit = p.limit()?;
    let select: Vec<String> = cols
        .iter()
        .map(|(name, kind)| match kind {
            Col::Time => format!("UNIX_TIMESTAMP({name})"),
            Col::Money => format!("CAST({name} AS CHAR)"),
            _ => (*name).to_string(),
        })
        .collect();
    // Table and column names are constants of this module, never input.
    let sql = format!("SELECT {} FROM {table} WHERE {key} > ? ORDER BY {key} LIMIT ?", select.join(", "));
    let mut conn = conn(state).await?;
    let rows: Vec<mysql_async::Row> = conn.exec(sql, (after, limit)).await.map_err(query_failed)?;
    let rows: Vec<Value> = rows.into_iter().map(|r| Value::Object(to_json(r, cols))).collect();
    Ok(Json(serde_json::json!({ wrapper: rows })))
}

/// Defines the handler of one raw table: a page of it read from MySQL, by
/// ascending primary key, in the reference stack's shape (`{"<table>": [...]}`).
/// One annotation serves all four tables.
macro_rules! raw_table {
    ($(#[$doc:meta])* $table:ident, $path:literal, $key:literal, [$(($col:literal, $kind:ident)),+ $(,)?]) => {
        $(#[$doc])*
        #[utoipa::path(get, path = $path, tag = "raw",
            params(
                ("after" = Option<i64>, Query, description = "cursor: only rows whose primary key is greater than this"),
                ("limit" = Option<i64>, Query, description = "page size, 1 to 1000", minimum = 1, maximum = 1000, example = 100),
            ),
            responses(
                (status = 200, description = "`{\"<table>\": [row, ...]}` by ascending primary key; decimals as strings, times as RFC 3339", body = Object),
                (status = 400, description = "a bad or unknown parameter", body = ErrorBody),
                (status = 503, description = "MySQL is unreachable or not configured", body = ErrorBody),
            ))]
        pub async fn $table(State(s): State<AppState>, Query(q): Query<HashMap<String, String>>) -> Result<Json<Value>, ApiError> {
            let table = stringify!($table);
            table_page(&s, q, table, $key, &[$(($col, Col::$kind)),+], table).await
        }
    };
}

raw_table!(
    /// `shop.users`, by `user_id`.
    users, "/users", "user_id",
    [("user_id", Int), ("name", Text), ("email", Text), ("phone", Text), ("created_at", Time)]
);
raw_table!(
    /// `shop.addresses`, by `address_id`.
    addresses, "/addresses", "address_id",
    [("address_id", Int), ("user_id", Int), ("street", Text), ("city", Text), ("state", Text), ("postal_code", Text), ("country", Text), ("created_at", Time)]
);
raw_table!(
    /// `shop.orders`, by `order_id`.
    orders, "/orders", "order_id",
    [("order_id", Int), ("user_id", Int), ("total", Money), ("order_date", Time), ("order_status", Text), ("updated_date", Time)]
);
raw_table!(
    /// `shop.order_items`, by `id`.
    order_items, "/order_items", "id",
    [("id", Int), ("order_id", Int), ("name", Text), ("quantity", Int), ("price", Money)]
);
