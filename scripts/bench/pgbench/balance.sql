-- GET /points: one statement (diesel query builder: a named prepared statement; `.first()` adds LIMIT).
\set uid random(1, :users)
SELECT balance FROM point_wallets WHERE user_id = :uid LIMIT 1;
