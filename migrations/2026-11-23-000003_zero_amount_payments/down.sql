ALTER TABLE point_history DROP CONSTRAINT point_history_amount_check;
ALTER TABLE point_history ADD CONSTRAINT point_history_amount_check CHECK (amount > 0);
