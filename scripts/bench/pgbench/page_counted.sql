-- GET /products?page=N&size=20 on a schema without the kept count (before migration
-- 2026-11-29-000003): a COUNT(*) of the table, then the page.
\set page random(1, :pages)
SELECT count(*) FROM products;
SELECT id, name, description, price, stock FROM products ORDER BY id LIMIT 20 OFFSET (:page - 1) * 20;
