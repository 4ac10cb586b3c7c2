-- The minimal schema for order + pay's second reference (scripts/bench/pgbench/orderpay_minimal.sql):
-- the same business rows as the app's schema — a product row, an order with one line, a
-- wallet row, a history row, an outbox row — with only what the work itself needs: primary
-- keys, the non-negative checks the guarded updates rely on, no other index, no trigger, no
-- JSON beyond the outbox payload. psql variables: users, products. Made by scripts/bench.sh.
CREATE TABLE min_products (id bigint PRIMARY KEY, name text NOT NULL, price bigint NOT NULL,
                           stock bigint NOT NULL CHECK (stock >= 0));
CREATE TABLE min_wallets (user_id bigint PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
CREATE TABLE min_orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL, status text NOT NULL,
                         amount bigint NOT NULL, created_at timestamptz NOT NULL,
                         paid_at timestamptz);
CREATE TABLE min_order_lines (order_id bigint NOT NULL, product_id bigint NOT NULL,
                              name text NOT NULL, unit_price bigint NOT NULL,
                              quantity bigint NOT NULL, amount bigint NOT NULL,
                              PRIMARY KEY (order_id, product_id));
CREATE TABLE min_history (id bigserial PRIMARY KEY, user_id bigint NOT NULL, amount bigint NOT NULL,
                          balance_after bigint NOT NULL, order_id bigint, created_at timestamptz NOT NULL);
CREATE TABLE min_outbox (id bigserial PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO min_products SELECT id, name, price, stock FROM products;
INSERT INTO min_wallets SELECT g, 50000000 FROM generate_series(1, :users) g;
