-- The shop: five sources and the order_details_mv view, in cdcview's SQL.
--
-- Sources are Kafka topics read as tables, declared as RisingWave and
-- Feldera users declare theirs: columns, a primary key, and WITH (connector,
-- topic, format). Views are CREATE VIEW (read by other views, not served) and
-- CREATE MATERIALIZED VIEW (maintained, served over HTTP, written to
-- PostgreSQL). `cdcview explain views/shop.sql` prints what each compiles to.

CREATE TABLE users (
    user_id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    phone TEXT
) WITH (connector = 'kafka', topic = 'mysql.shop.users', format = 'debezium-json');

CREATE TABLE addresses (
    address_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    street TEXT NOT NULL,
    city TEXT NOT NULL,
    state TEXT,
    postal_code TEXT,
    country TEXT NOT NULL
) WITH (connector = 'kafka', topic = 'mysql.shop.addresses', format = 'debezium-json');

CREATE TABLE orders (
    order_id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    total DECIMAL(10, 2) NOT NULL,
    order_date TIMESTAMPTZ,
    order_status TEXT,
    updated_date TIMESTAMPTZ
) WITH (connector = 'kafka', topic = 'mysql.shop.orders', format = 'debezium-json');

CREATE TABLE order_items (
    id BIGINT PRIMARY KEY,
    order_id BIGINT,
    name TEXT,
    quantity INT,
    price DECIMAL(10, 2) NOT NULL
) WITH (connector = 'kafka', topic = 'mysql.shop.order_items', format = 'debezium-json');

-- Status events pushed by other services: JSON objects, `updated_at` in
-- seconds since the epoch. No primary key: every record is an event of its
-- own (a pusher replayed after a crash sends ids again).
CREATE TABLE order_updates (
    id BIGINT NOT NULL,
    order_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
) WITH (connector = 'kafka', topic = 'order_updates', format = 'json');

-- Each user's newest address, written as CONCAT_WS writes it (NULL parts
-- left out with their separator).
CREATE VIEW newest_address AS
SELECT DISTINCT ON (user_id)
    user_id,
    CONCAT_WS(', ', street, city, state, postal_code, country) AS full_address
FROM addresses
ORDER BY user_id, address_id DESC;

-- Each order's newest status event (ties broken by id, then status).
CREATE VIEW newest_status AS
SELECT DISTINCT ON (order_id)
    order_id,
    status,
    to_timestamp(updated_at) AS updated_at
FROM order_updates
ORDER BY order_id, updated_at DESC, id DESC, status DESC;

-- Each order's items: lines by item id, joined by ' | '. An item without a
-- name or quantity is counted but has no line and adds nothing.
CREATE VIEW order_item_lines AS
SELECT
    order_id,
    STRING_AGG(
        CASE WHEN name IS NOT NULL AND quantity IS NOT NULL
             THEN CONCAT(name, ' (Qty: ', quantity, ', Price: ', price, ', Total: ', quantity * price, ')')
        END,
        ' | ' ORDER BY id) AS order_items_details,
    COUNT(*) AS item_count,
    COALESCE(SUM(quantity * price), 0.00) AS items_total
FROM order_items
WHERE order_id IS NOT NULL
GROUP BY order_id;

-- One row per order whose user exists. The status is the newer of the
-- order's own and its newest event; on equal times the event wins.
CREATE MATERIALIZED VIEW order_details_mv AS
SELECT
    o.order_id,
    o.user_id,
    o.total,
    o.order_date,
    u.name AS user_name,
    u.email AS user_email,
    u.phone AS user_phone,
    a.full_address,
    i.order_items_details,
    COALESCE(i.item_count, 0) AS item_count,
    COALESCE(i.items_total, 0.00) AS items_total,
    CASE WHEN s.order_id IS NOT NULL AND (o.updated_date IS NULL OR s.updated_at >= o.updated_date)
         THEN s.status ELSE o.order_status END AS order_status,
    CASE WHEN s.order_id IS NOT NULL AND (o.updated_date IS NULL OR s.updated_at >= o.updated_date)
         THEN s.updated_at ELSE o.updated_date END AS last_order_update
FROM orders o
JOIN users u ON u.user_id = o.user_id
LEFT JOIN newest_address a ON a.user_id = o.user_id
LEFT JOIN order_item_lines i ON i.order_id = o.order_id
LEFT JOIN newest_status s ON s.order_id = o.order_id;
