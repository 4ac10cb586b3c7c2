-- The catalogue's size, kept so that a page of GET /products reports its total without
-- counting the products table on every request (a COUNT(*) grows with the catalogue).
-- One row, pinned by a primary key that can only be true. `PgProductRepository::create`
-- adds 1 in the same statement that inserts a product, so the count is exact at every
-- commit; nothing deletes products (order lines and sales refer to them). Anything that
-- ever inserts or deletes products outside that statement must adjust this row in the
-- same transaction.
CREATE TABLE catalogue_stats (
    id             BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    product_count  BIGINT NOT NULL CHECK (product_count >= 0)
);

-- SHARE mode holds off inserts until this migration commits, so none is missed.
LOCK TABLE products IN SHARE MODE;
INSERT INTO catalogue_stats (id, product_count) SELECT true, count(*) FROM products;
