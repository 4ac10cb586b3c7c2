-- GET /products?page=N&size=20: the kept count and the page in one statement.
\set page random(1, :pages)
SELECT s.product_count, p.id, p.name, p.description, p.price, p.stock
  FROM catalogue_stats s
  LEFT JOIN LATERAL (SELECT id, name, description, price, stock FROM products
                      ORDER BY id LIMIT 20 OFFSET (:page - 1) * 20) p ON true;
