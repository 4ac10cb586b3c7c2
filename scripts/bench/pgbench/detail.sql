-- GET /products/{id}: one statement per request, the form a server without grouping sends (the app sends
-- `WHERE id = ANY($1)`, for one id alone or for the reads that overlap: docs/architecture.md#grouped-reads).
\set pid random(1, :products)
SELECT id, name, description, price, stock FROM products WHERE id = :pid LIMIT 1;
