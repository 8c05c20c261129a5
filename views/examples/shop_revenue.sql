-- Revenue per city, over four of the shop's sources (declared in shop.sql,
-- which loads first): each user counts in the city of their newest address,
-- each order once, each item's quantity × price once.

CREATE VIEW user_city AS
SELECT DISTINCT ON (user_id) user_id, city, country
FROM addresses
ORDER BY user_id, address_id DESC;

CREATE MATERIALIZED VIEW revenue_by_city AS
SELECT
    c.country,
    c.city,
    COUNT(DISTINCT o.order_id) AS orders,
    COUNT(DISTINCT o.user_id) AS buyers,
    COUNT(i.id) AS items,
    COALESCE(SUM(i.quantity * i.price), 0.00) AS revenue,
    MAX(o.order_date) AS last_order
FROM orders o
JOIN users u ON u.user_id = o.user_id
JOIN user_city c ON c.user_id = u.user_id
LEFT JOIN order_items i ON i.order_id = o.order_id
GROUP BY c.country, c.city;
