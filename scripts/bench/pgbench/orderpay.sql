-- Order + pay: the two transactions the app runs for POST /orders and POST /points/use
-- (one line, no coupon, no Idempotency-Key) one request at a time, statement for statement
-- as crates/adapter-postgres/src/orders.rs sends them for a call that waits for its rows
-- (TAKE_STOCK, STORE_ORDER, MARK_PAID, DEBIT_FOR_ORDER; prepared once per connection, so run
-- with -M prepared): the per-request reference. The app sends these, with the payment's
-- rows taken by SKIP LOCKED, for a call alone; calls that overlap go in grouped transactions
-- (TAKE_PLACEABLE, STORE_PLACED; TAKE_PAYABLE, PAY_SETTLED). The app binds arrays and
-- a NULL coupon id as parameters; here they are ARRAY[...] and NULL in the text, and
-- the NULL columns a \gset reads are wrapped in coalesce(). The app binds the event's
-- time-ordered id (UUIDv7) and its rendered JSON; here the id is made from the order id
-- (ordered too) and the JSON is a literal of the same size.
-- One pgbench "transaction" = one operation.
\set uid random(1, :users)
\set pid random(1, :products)
\set q random(1, 3)
BEGIN;
WITH wanted AS (
    SELECT * FROM unnest(ARRAY[:pid]::bigint[], ARRAY[:q]::bigint[]) AS w (product_id, quantity)),
locked AS MATERIALIZED (
    SELECT p.id FROM products p JOIN wanted w ON w.product_id = p.id
    WHERE p.stock >= w.quantity ORDER BY p.id FOR UPDATE OF p),
taken AS (
    UPDATE products p SET stock = p.stock - w.quantity, updated_at = now()
    FROM locked k JOIN wanted w ON w.product_id = k.id
    WHERE p.id = k.id AND p.stock >= w.quantity
    RETURNING p.id, p.name, p.price)
SELECT t.id, t.name, t.price, coalesce(c.discount_type, '') AS discount_type, coalesce(c.discount_value, 0) AS discount_value
FROM taken t LEFT JOIN (
    SELECT c.discount_type, c.discount_value FROM user_coupons uc
    JOIN coupons c ON c.id = uc.coupon_id WHERE uc.id = NULL::bigint) c ON true \gset
\set total :price * :q
WITH used AS (
     UPDATE user_coupons SET status = 'USED', used_at = now()
     WHERE id = NULL::bigint AND user_id = :uid AND status = 'AVAILABLE' AND expires_at > now()
     RETURNING id),
 o AS (
     INSERT INTO orders (user_id, status, total_amount, discount_amount, pay_amount,
                         user_coupon_id, created_at, expires_at, updated_at)
     SELECT :uid, 'NOT_PAID', :total, 0, :total, NULL::bigint, now(),
            now() + 86400000000 * interval '1 microsecond', now()
     WHERE NULL::bigint IS NULL OR EXISTS (SELECT 1 FROM used)
     RETURNING id, created_at, expires_at),
 stored_lines AS (
     INSERT INTO order_lines (order_id, product_id, product_name, unit_price, quantity, amount)
     SELECT o.id, x.* FROM o,
            unnest(ARRAY[:pid]::bigint[], ARRAY[:name]::text[], ARRAY[:price]::bigint[],
                   ARRAY[:q]::bigint[], ARRAY[:total]::bigint[])
            AS x (product_id, product_name, unit_price, quantity, amount))
 SELECT id AS oid, created_at, expires_at FROM o \gset
COMMIT;
BEGIN;
WITH o AS (
     UPDATE orders SET status = 'PAID', paid_at = statement_timestamp(),
                       updated_at = statement_timestamp()
     WHERE id = :oid AND user_id = :uid AND status = 'NOT_PAID'
       AND expires_at > statement_timestamp()
     RETURNING *)
 SELECT o.id, o.user_id, o.status, o.total_amount, o.discount_amount, o.pay_amount AS amt,
        coalesce(o.user_coupon_id, 0) AS user_coupon_id, o.created_at, o.expires_at, o.paid_at,
        l.line_product_ids, l.line_names, l.line_prices, l.line_quantities, l.line_amounts
 FROM o LEFT JOIN LATERAL (
     SELECT array_agg(product_id ORDER BY product_id) AS line_product_ids,
            array_agg(product_name ORDER BY product_id) AS line_names,
            array_agg(unit_price ORDER BY product_id) AS line_prices,
            array_agg(quantity ORDER BY product_id) AS line_quantities,
            array_agg(amount ORDER BY product_id) AS line_amounts
     FROM order_lines WHERE order_id = o.id) l ON true \gset
WITH debited AS (
    UPDATE point_wallets SET balance = balance - :amt, updated_at = now()
    WHERE user_id = :uid AND balance >= :amt RETURNING user_id, balance),
used AS (
    INSERT INTO point_history (user_id, kind, amount, balance_after, order_id, created_at)
    SELECT user_id, 'USE', :amt, balance, :oid, now() FROM debited),
event AS (
    INSERT INTO outbox_events (id, event_type, aggregate_id, payload, created_at, next_attempt_at)
    SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(:oid::bigint), 12, '0'))::uuid, 'ORDER_PAID', :oid,
           '{"eventId":"00000000-0000-0000-0000-000000000000","eventType":"ORDER_PAID","occurredAt":"2026-11-29T00:00:00.000000Z","order":{"orderId":1,"userId":1,"items":[{"productId":1,"quantity":1,"unitPrice":1000,"amount":1000}],"totalAmount":1000,"discountAmount":0,"payAmount":1000,"paidAt":"2026-11-29T00:00:00.000000Z"}}'::json,
           now(), now()
    FROM debited)
SELECT (SELECT balance FROM debited) AS balance, true AS held;
COMMIT;
