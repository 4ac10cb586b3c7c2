-- GET /products/{id}: one statement.
\set pid random(1, :products)
SELECT id, name, description, price, stock FROM products WHERE id = :pid;
