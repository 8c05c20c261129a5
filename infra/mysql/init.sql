-- The shop schema of the reference stack, unchanged, and the two users.
-- Idempotent: start.sh runs it on every start.
CREATE DATABASE IF NOT EXISTS shop;
USE shop;

CREATE TABLE IF NOT EXISTS users (
    user_id INT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(100) NOT NULL,
    email VARCHAR(100) UNIQUE NOT NULL,
    phone VARCHAR(20),
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS addresses (
    address_id INT AUTO_INCREMENT PRIMARY KEY,
    user_id INT NOT NULL,
    street VARCHAR(255) NOT NULL,
    city VARCHAR(100) NOT NULL,
    state VARCHAR(100),
    postal_code VARCHAR(20),
    country VARCHAR(100) NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(user_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS orders (
    order_id INT AUTO_INCREMENT PRIMARY KEY,
    user_id INT NOT NULL,
    total DECIMAL(10, 2) NOT NULL,
    order_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    order_status VARCHAR(255),
    updated_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(user_id) ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS order_items (
    id SERIAL PRIMARY KEY,
    order_id BIGINT UNSIGNED,
    name VARCHAR(255),
    quantity INT DEFAULT 1,
    price DECIMAL(10, 2) NOT NULL,
    -- Not in the reference schema. Without it, the naive query behind
    -- GET /order_details scans every item for every order (3 s per row with
    -- 300k items), which would make it a straw man rather than a baseline.
    KEY order_items_order_id (order_id)
);

-- Debezium's CDC user: read and replicate, nothing else. Created for
-- 'localhost' too, because anonymous ''@'localhost' users would shadow '%'.
CREATE USER IF NOT EXISTS 'debezium'@'%' IDENTIFIED BY 'dbz';
CREATE USER IF NOT EXISTS 'debezium'@'localhost' IDENTIFIED BY 'dbz';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'debezium'@'%';
GRANT SELECT, RELOAD, SHOW DATABASES, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'debezium'@'localhost';

-- cdcview's user on this local stack: the shop's rows (seeding, the raw
-- endpoints, the tests' DML) and ALTER, for the test of schema changes while
-- running. The API itself only reads.
CREATE USER IF NOT EXISTS 'cdcview'@'%' IDENTIFIED BY 'cdcview';
CREATE USER IF NOT EXISTS 'cdcview'@'localhost' IDENTIFIED BY 'cdcview';
-- CREATE TEMPORARY TABLES: the end-to-end tests load the status events into
-- a session's temporary table to compute the whole view in SQL.
GRANT SELECT, INSERT, UPDATE, DELETE, ALTER, CREATE TEMPORARY TABLES ON shop.* TO 'cdcview'@'%';
GRANT SELECT, INSERT, UPDATE, DELETE, ALTER, CREATE TEMPORARY TABLES ON shop.* TO 'cdcview'@'localhost';
