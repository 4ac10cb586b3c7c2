-- Bench data, written straight into the freshly migrated bench database (fast, and the
-- same every run). psql variables: users (with a funded wallet), all_users (users
-- 1..all_users; those past `users` are the hot coupon's first-timers, wallet 0),
-- products.
--
-- Wallets start at 50,000,000 KRW: a run's charges (≤ 1,000 each) and payments
-- (≤ 3 × 10,000 each) leave them far from both 0 and the 100,000,000 cap.
-- Products have a stock of 1,000,000,000: no order of a run runs out.
BEGIN;
INSERT INTO users (id, created_at)
SELECT g, now() FROM generate_series(1, :all_users) g;
INSERT INTO point_wallets (user_id, balance, updated_at)
SELECT g, CASE WHEN g <= :users THEN 50000000 ELSE 0 END, now()
  FROM generate_series(1, :all_users) g;
SELECT setval(pg_get_serial_sequence('users', 'id'), :all_users);

INSERT INTO products (id, name, description, price, stock, created_at, updated_at)
SELECT g, 'Bench product ' || g, 'A product of the bench catalogue, number ' || g || '.',
       1000 + (g * 37) % 9001, 1000000000, now(), now()
  FROM generate_series(1, :products) g;
SELECT setval(pg_get_serial_sequence('products', 'id'), :products);
-- The kept catalogue size (migration 2026-11-29-000003), when the schema has it.
DO $$ BEGIN
  IF to_regclass('catalogue_stats') IS NOT NULL THEN
    UPDATE catalogue_stats SET product_count = (SELECT count(*) FROM products);
  END IF;
END $$;

-- The hot coupon reference's own tables (scripts/bench/pgbench/coupon_ref.sql).
CREATE TABLE ref_coupon (id int PRIMARY KEY, remaining bigint NOT NULL CHECK (remaining >= 0));
CREATE TABLE ref_user_coupon (user_id bigint PRIMARY KEY, coupon_id int NOT NULL,
                              issued_at timestamptz NOT NULL DEFAULT now());
INSERT INTO ref_coupon VALUES (1, 1000000000);
COMMIT;
VACUUM ANALYZE;
