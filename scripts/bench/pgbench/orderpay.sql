-- Order + pay: the two transactions the app runs for POST /orders and POST /points/use
-- (one line, no coupon, no Idempotency-Key). One pgbench "transaction" = one operation.
\set uid random(1, :users)
\set pid random(1, :products)
\set q random(1, 3)
-- place: take the stock (guarded, returns the price it snapshots), then the order and
-- its lines in one statement
BEGIN;
UPDATE products SET stock = stock - :q, updated_at = now()
 WHERE id = :pid AND stock >= :q RETURNING name, price \gset
\set total :price * :q
WITH o AS (
  INSERT INTO orders (user_id, status, total_amount, discount_amount, pay_amount,
                      user_coupon_id, created_at, expires_at, updated_at)
  VALUES (:uid, 'NOT_PAID', :total, 0, :total, NULL, now(), now() + interval '1 day', now())
  RETURNING id),
l AS (
  INSERT INTO order_lines (order_id, product_id, product_name, unit_price, quantity, amount)
  SELECT id, :pid, :name, :price, :q, :total FROM o)
SELECT id AS oid FROM o \gset
COMMIT;
-- pay: the guarded move to PAID (database clock), then wallet + USE row + outbox event
BEGIN;
UPDATE orders SET status = 'PAID', paid_at = now(), updated_at = now()
 WHERE id = :oid AND user_id = :uid AND status = 'NOT_PAID' AND expires_at > now()
 RETURNING pay_amount AS amt \gset
WITH debited AS (
  UPDATE point_wallets SET balance = balance - :amt, updated_at = now()
   WHERE user_id = :uid AND balance >= :amt RETURNING balance),
recorded AS (
  INSERT INTO point_history (user_id, kind, amount, balance_after, order_id, created_at)
  SELECT :uid, 'USE', :amt, balance, :oid, now() FROM debited),
event AS (
  INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at)
  SELECT gen_random_uuid(), 'ORDER_PAID', :oid,
         '{"eventId":"00000000-0000-0000-0000-000000000000","eventType":"ORDER_PAID","occurredAt":"2026-11-29T00:00:00.000000Z","order":{"orderId":1,"userId":1,"items":[{"productId":1,"quantity":1,"unitPrice":1000,"amount":1000}],"totalAmount":1000,"discountAmount":0,"payAmount":1000,"paidAt":"2026-11-29T00:00:00.000000Z"}}'::jsonb,
         now(), now()
    FROM debited)
SELECT balance FROM debited;
COMMIT;
