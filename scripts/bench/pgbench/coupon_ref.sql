-- The single-row reference for the hot coupon: one counter row + the user-coupon row,
-- one transaction per issue (tables ref_coupon / ref_user_coupon, made by bench.sh).
\set uid random(1, 2000000000)
BEGIN;
UPDATE ref_coupon SET remaining = remaining - 1 WHERE id = 1 AND remaining > 0;
INSERT INTO ref_user_coupon (user_id, coupon_id) VALUES (:uid, 1) ON CONFLICT DO NOTHING;
COMMIT;
