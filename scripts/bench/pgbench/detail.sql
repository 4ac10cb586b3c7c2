-- GET /products/{id}: one statement (diesel query builder: a named prepared statement; `.first()` adds LIMIT).
\set pid random(1, :products)
SELECT id, name, description, price, stock FROM products WHERE id = :pid LIMIT 1;
