//! The SQL front end on the shop's own declarations, on the reference
//! stack's SQL, and on what it must refuse.

use cdcview_sql::{Catalog, Kind, SqlType};

fn repo_file(path: &str) -> String {
    let full = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn shop() -> Catalog {
    let mut catalog = Catalog::new();
    catalog.load(&repo_file("views/shop.sql")).unwrap_or_else(|e| panic!("views/shop.sql: {e}"));
    catalog
}

#[test]
fn the_shop_view_has_todays_columns_types_and_key() {
    let catalog = shop();
    let view = catalog.get("order_details_mv").expect("declared");
    assert!(view.is_materialized());
    let columns: Vec<(&str, SqlType, bool)> = view.columns.iter().map(|c| (c.name.as_str(), c.ty, c.nullable)).collect();
    let money = SqlType::Decimal { scale: Some(2) };
    assert_eq!(
        columns,
        [
            ("order_id", SqlType::Int, false),
            ("user_id", SqlType::Int, false),
            ("total", money, false),
            ("order_date", SqlType::Timestamp, true),
            ("user_name", SqlType::Text, false),
            ("user_email", SqlType::Text, false),
            ("user_phone", SqlType::Text, true),
            ("full_address", SqlType::Text, true),
            ("order_items_details", SqlType::Text, true),
            ("item_count", SqlType::Int, false),
            ("items_total", money, false),
            ("order_status", SqlType::Text, true),
            ("last_order_update", SqlType::Timestamp, true),
        ]
    );
    assert_eq!(view.key, Some(vec![0]), "keyed by order_id:\n{}", view.explain());
    for helper in ["newest_address", "newest_status", "order_item_lines"] {
        assert!(!catalog.get(helper).unwrap().is_materialized(), "{helper} is an intermediate view");
    }
    assert_eq!(catalog.get("newest_status").unwrap().key, Some(vec![0]));
    assert_eq!(catalog.get("order_updates").unwrap().key, None, "status events are rows of their own");
}

#[test]
fn the_reference_stacks_views_plan_unchanged() {
    // The reference's own file, vendored so that the test needs nothing
    // outside the repository; where the original is at hand, it is the same.
    let reference = repo_file("tests/fixtures/reference/queries.sql");
    if let Ok(original) = std::fs::read_to_string(format!("{}/../../../shared/reference/queries.sql", env!("CARGO_MANIFEST_DIR"))) {
        assert_eq!(reference, original, "tests/fixtures/reference/queries.sql differs from ../shared/reference/queries.sql");
    }
    let statement = |name: &str| -> String {
        let found = reference.split(';').find(|s| s.contains(&format!("CREATE MATERIALIZED VIEW {name} ")));
        found.unwrap_or_else(|| panic!("{name} in the reference")).to_string() + ";"
    };
    let mut catalog = Catalog::new();
    catalog.load(&reference_sources()).unwrap();
    catalog.load(&statement("LastUpdate")).unwrap_or_else(|e| panic!("LastUpdate: {e}"));
    catalog.load(&statement("order_summary")).unwrap_or_else(|e| panic!("order_summary: {e}"));
    let summary = catalog.get("order_summary").unwrap();
    let names: Vec<&str> = summary.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["order_id", "total", "order_date", "order_status", "last_order_update", "user_id", "user_phone", "full_address", "order_items_details"]
    );
    assert_eq!(summary.columns[4].ty, SqlType::Timestamp);
    let Kind::View { plan, .. } = &summary.kind else { panic!("a view") };
    let text = plan.to_string();
    assert!(text.contains("LeftJoin"), "{text}");
    let Kind::View { plan, .. } = &catalog.get("lastupdate").unwrap().kind else { panic!("a view") };
    assert!(plan.to_string().contains("RowNumber"), "{plan}");
}

/// The reference's sources, declared in cdcview's syntax: the Debezium
/// tables, and its `updates` view (JSON fields of the status topic, all text
/// but the ids) as a JSON source.
pub fn reference_sources() -> String {
    "CREATE TABLE users (user_id BIGINT PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT)
        WITH (connector = 'kafka', topic = 'mysql.shop.users', format = 'debezium-json');
     CREATE TABLE addresses (address_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, street TEXT NOT NULL, city TEXT NOT NULL,
        state TEXT, postal_code TEXT, country TEXT NOT NULL)
        WITH (connector = 'kafka', topic = 'mysql.shop.addresses', format = 'debezium-json');
     CREATE TABLE orders (order_id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, total DECIMAL(10,2) NOT NULL, order_date TIMESTAMPTZ,
        order_status TEXT, updated_date TIMESTAMPTZ)
        WITH (connector = 'kafka', topic = 'mysql.shop.orders', format = 'debezium-json');
     CREATE TABLE order_items (id BIGINT PRIMARY KEY, order_id BIGINT, name TEXT, quantity INT, price DECIMAL(10,2) NOT NULL)
        WITH (connector = 'kafka', topic = 'mysql.shop.order_items', format = 'debezium-json');
     CREATE TABLE updates (id INT PRIMARY KEY, order_id INT NOT NULL, status TEXT, updated_at TEXT)
        WITH (connector = 'kafka', topic = 'order_updates', format = 'json');"
        .to_string()
}

/// Loads `sql` after the shop's declarations and returns the error.
fn refused(sql: &str) -> cdcview_sql::SqlError {
    let mut catalog = shop();
    let before = catalog.relations().len();
    let err = catalog.load(sql).expect_err(sql);
    assert_eq!(catalog.relations().len(), before, "a refused file adds nothing");
    err
}

#[test]
fn constructs_outside_the_subset_are_refused_with_their_position() {
    // (statement, part of the message, line, column or 0 for "any")
    let cases: &[(&str, &str, u64, u64)] = &[
        (
            "CREATE MATERIALIZED VIEW v AS\nSELECT o.order_id FROM orders o RIGHT JOIN users u ON u.user_id = o.user_id;",
            "not supported: this join",
            2,
            0,
        ),
        ("CREATE MATERIALIZED VIEW v AS SELECT order_id FROM orders, users;", "FROM a, b", 1, 0),
        ("CREATE MATERIALIZED VIEW v AS SELECT nope FROM orders;", "no column nope", 1, 38),
        ("CREATE MATERIALIZED VIEW v AS SELECT order_id FROM orders LIMIT 5;", "LIMIT", 1, 0),
        ("CREATE MATERIALIZED VIEW v AS SELECT RANK() OVER (ORDER BY total) AS r FROM orders;", "the window function", 1, 38),
        ("CREATE MATERIALIZED VIEW v AS SELECT user_id, total FROM orders GROUP BY user_id;", "must appear in GROUP BY", 1, 47),
        ("CREATE MATERIALIZED VIEW v AS SELECT order_id FROM orders WHERE SUM(total) > 1;", "aggregate", 1, 0),
        (
            "CREATE MATERIALIZED VIEW v AS SELECT o.order_id, (SELECT i.name FROM order_items i WHERE i.order_id = o.order_id) AS n FROM orders o;",
            "more than one row",
            1,
            0,
        ),
        ("CREATE MATERIALIZED VIEW v AS SELECT order_id FROM orders ORDER BY order_id;", "ORDER BY in a view", 1, 0),
        ("CREATE MATERIALIZED VIEW v AS SELECT total + 'x' AS t FROM orders;", "do not mix", 1, 0),
        ("CREATE MATERIALIZED VIEW v AS SELECT total / 3 AS t FROM orders;", "a division of exact numerics: not supported yet", 1, 38),
        ("CREATE MATERIALIZED VIEW v AS SELECT order_id FROM nowhere;", "no source or view named nowhere", 1, 52),
        ("CREATE MATERIALIZED VIEW order_details_mv AS SELECT order_id FROM orders;", "declared twice", 1, 26),
        ("CREATE MATERIALIZED VIEW v AS SELEC order_id FROM orders;", "Expected", 1, 31),
        ("DROP TABLE orders;", "not supported: the statement DROP TABLE", 1, 1),
        ("CREATE TABLE t (a INT) WITH (connector = 'kafka', topic = 't', format = 'debezium-json');", "needs a PRIMARY KEY", 1, 14),
    ];
    for (sql, message, line, column) in cases {
        let err = refused(sql);
        assert!(err.message.contains(message), "{sql}\n  gave: {err}\n  expected a message with: {message}");
        assert_eq!(err.line, *line, "{sql}\n  gave: {err}");
        if *column > 0 {
            assert_eq!(err.column, *column, "{sql}\n  gave: {err}");
        }
        assert!(err.line > 0 && err.column > 0, "{sql}: no position in {err}");
    }
}

#[test]
fn accepted_expressions_plan_with_sql_result_types() {
    let mut catalog = shop();
    catalog
        .load(
            "CREATE MATERIALIZED VIEW per_user AS
             SELECT o.user_id, COUNT(*) AS orders, COUNT(DISTINCT o.order_status) AS statuses, SUM(o.total * 2) AS doubled,
                    MIN(o.order_date) AS first, MAX(LOWER(u.email)) AS email, AVG(o.total) AS mean,
                    STRING_AGG(UPPER(TRIM(o.order_status)) || '!', ',' ORDER BY o.order_id DESC) AS log
             FROM orders o JOIN users u ON u.user_id = o.user_id
             WHERE o.total > 0 AND o.order_status IN ('paid', 'sent') AND u.name LIKE 'A%' AND NOT (o.user_id IS NULL)
             GROUP BY o.user_id
             HAVING COUNT(*) > 1;",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let view = catalog.get("per_user").unwrap();
    let types: Vec<SqlType> = view.columns.iter().map(|c| c.ty).collect();
    assert_eq!(
        types,
        [
            SqlType::Int,
            SqlType::Int,
            SqlType::Int,
            SqlType::Decimal { scale: Some(2) },
            SqlType::Timestamp,
            SqlType::Text,
            SqlType::Decimal { scale: None },
            SqlType::Text
        ]
    );
    assert_eq!(view.key, Some(vec![0]));
}

#[test]
fn explain_names_every_operator_of_the_shop_view() {
    let catalog = shop();
    let text = catalog.get("order_details_mv").unwrap().explain();
    println!("{text}");
    for operator in ["Get orders", "Get users", "Join on", "LeftJoin on", "Get newest_address", "Get order_item_lines", "Get newest_status", "Map "] {
        assert!(text.contains(operator), "{operator} missing from\n{text}");
    }
    assert!(text.contains("the 4 joins below run as one Star operator on the rows of orders"), "the star is not named in\n{text}");
    let items = catalog.get("order_item_lines").unwrap().explain();
    assert!(!items.contains("Star"), "{items}");
    assert!(items.contains("Reduce group by [#0] aggregates [StringAgg(#1, ' | ' ORDER BY #2), Count(*), Sum(#3)]"), "{items}");
}
