-- GET /points: one statement per request, the form a server without grouping sends (the app sends
-- `WHERE user_id = ANY($1)`, for one user alone or for the reads that overlap: docs/architecture.md#grouped-reads).
\set uid random(1, :users)
SELECT balance FROM point_wallets WHERE user_id = :uid LIMIT 1;
