-- What order + pay paid for that nothing needs (measured against a minimal schema doing the
-- same work: docs/benchmarks.md, "A lean payment").
--
-- No query reads order lines by product: the best-seller roll-up reaches lines through
-- their order (the primary key's leading column), and products are never deleted nor
-- their ids changed, so the foreign key below never needed it either. Every line cost an
-- insert into it.
DROP INDEX order_lines_by_product;

-- Foreign keys whose reference the inserting statement makes itself. Each is a per-row
-- trigger (a lookup that also locks the referenced row) on every insert. Nothing deletes
-- orders, products or wallets, nor changes their ids, so only an insert could break these,
-- and every statement that inserts into these tables takes the reference from the row it
-- has just written or locked:
--  * an order's lines are inserted from the order the same statement inserts, with the
--    products whose stock the same transaction has just taken (`orders.rs`, STORE_ORDER);
--  * a history row is inserted from the wallet row the same statement updates
--    (`points.rs`, the charges; `orders.rs`, DEBIT_FOR_ORDER), and a USE row names the
--    order the same transaction has just moved to PAID.
-- The references that come from a request keep their keys: an order's user and user
-- coupon, a copy's user and coupon, a wallet's and a subject's user.
ALTER TABLE order_lines
    DROP CONSTRAINT order_lines_order_id_fkey,
    DROP CONSTRAINT order_lines_product_id_fkey;
ALTER TABLE point_history
    DROP CONSTRAINT point_history_user_id_fkey,
    DROP CONSTRAINT point_history_order_id_fkey;

-- The event is JSON the server renders once; `json` keeps those bytes as they are (and
-- checks they are JSON), where `jsonb` parsed them into its binary form on every payment
-- and printed them back, keys reordered, for every delivery. Nothing queries inside it.
ALTER TABLE outbox_events ALTER COLUMN payload TYPE json USING payload::json;
