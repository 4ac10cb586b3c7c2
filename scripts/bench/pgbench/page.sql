-- GET /products?page=N&size=20: the kept count and the page in one statement
-- (LIST_PAGES in crates/adapter-postgres/src/products.rs sends this for one page alone, as
-- `unnest` of one offset and limit; overlapping pages go together in one statement).
\set offset (random(1, :pages) - 1) * 20
SELECT c.product_count, p.id, p.name, p.description, p.price, p.stock
  FROM catalogue_stats c
  LEFT JOIN LATERAL (
      SELECT id, name, description, price, stock FROM products
       ORDER BY id OFFSET :offset LIMIT 20
  ) p ON true
 ORDER BY p.id;
