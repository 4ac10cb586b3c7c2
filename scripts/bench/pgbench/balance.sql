-- GET /points: one statement.
\set uid random(1, :users)
SELECT balance FROM point_wallets WHERE user_id = :uid;
