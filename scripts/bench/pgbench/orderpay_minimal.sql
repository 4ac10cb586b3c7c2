-- Order + pay on the minimal schema (scripts/bench/minimal.sql): the same business work as
-- orderpay.sql — take the stock, store the order and its line; move it to PAID, debit the
-- wallet, record the history row and the outbox event — in the same shape (two
-- transactions, each BEGIN, two statements, COMMIT), without what the real schema adds
-- (its triggers, its other indexes and columns, the coupon's and the lines' arrays). What
-- the app's order + pay is compared with as the lean floor of that work (docs/benchmarks.md).
\set uid random(1, :users)
\set pid random(1, :products)
\set q random(1, 3)
BEGIN;
UPDATE min_products SET stock = stock - :q WHERE id = :pid AND stock >= :q RETURNING name, price \gset
\set total :price * :q
WITH o AS (
    INSERT INTO min_orders (user_id, status, amount, created_at)
    VALUES (:uid, 'NOT_PAID', :total, now()) RETURNING id, amount),
 l AS (
    INSERT INTO min_order_lines (order_id, product_id, name, unit_price, quantity, amount)
    SELECT o.id, :pid::bigint, :name::text, :price::bigint, :q::bigint, o.amount FROM o
    RETURNING order_id)
SELECT o.id AS oid, o.amount FROM o \gset
COMMIT;
BEGIN;
UPDATE min_orders SET status = 'PAID', paid_at = now()
 WHERE id = :oid AND user_id = :uid AND status = 'NOT_PAID' RETURNING amount \gset
WITH debited AS (
    UPDATE min_wallets SET balance = balance - :amount
    WHERE user_id = :uid AND balance >= :amount RETURNING balance),
 h AS (
    INSERT INTO min_history (user_id, amount, balance_after, order_id, created_at)
    SELECT :uid::bigint, :amount::bigint, balance, :oid::bigint, now() FROM debited),
 e AS (
    INSERT INTO min_outbox (payload, created_at)
    SELECT jsonb_build_object('orderId', :oid::bigint, 'userId', :uid::bigint,
                              'payAmount', :amount::bigint), now()
    FROM debited)
SELECT balance FROM debited;
COMMIT;
