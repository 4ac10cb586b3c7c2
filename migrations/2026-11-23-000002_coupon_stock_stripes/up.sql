-- The remaining quantity of a coupon, split over up to 32 stripes.
--
-- A single counter row serialises every issue of a hot coupon at the commit rate of
-- one row lock. Issuing instead claims a unit from any stripe that nobody else holds
-- (FOR UPDATE SKIP LOCKED), so up to 32 issues commit in parallel. The remaining
-- quantity is exactly the sum over the stripes; CHECK keeps each one non-negative.
CREATE TABLE coupon_stock_stripes (
    coupon_id  BIGINT NOT NULL REFERENCES coupons (id),
    stripe     SMALLINT NOT NULL CHECK (stripe >= 0),
    remaining  BIGINT NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (coupon_id, stripe)
) WITH (fillfactor = 50);  -- room for HOT updates of the hot rows
