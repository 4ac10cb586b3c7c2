-- POST /points/charge without Idempotency-Key: one autocommit statement (CREDIT in
-- crates/adapter-postgres/src/points.rs; prepared once per connection, so run with -M prepared).
\set uid random(1, :users)
\set amount random(1, 1000)
\set ceiling 100000000 - :amount
WITH credited AS (
    UPDATE point_wallets SET balance = balance + :amount, updated_at = now()
    WHERE user_id = :uid AND balance <= :ceiling RETURNING user_id, balance),
recorded AS (
    INSERT INTO point_history (user_id, kind, amount, balance_after, created_at)
    SELECT user_id, 'CHARGE', :amount, balance, now() FROM credited)
SELECT balance FROM credited;
