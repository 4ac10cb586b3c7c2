DROP TABLE coupon_stock_stripes;
