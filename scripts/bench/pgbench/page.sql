-- GET /products?page=N&size=20: the kept count and the page in one statement
-- (LIST_PAGE in crates/adapter-postgres/src/products.rs).
\set offset (random(1, :pages) - 1) * 20
SELECT c.product_count, p.id, p.name, p.description, p.price, p.stock
  FROM catalogue_stats c
  LEFT JOIN LATERAL (
      SELECT id, name, description, price, stock FROM products
       ORDER BY id OFFSET :offset LIMIT 20
  ) p ON true
 ORDER BY p.id;
