-- A fully discounted order pays 0 and still has its one USE history row (invariant 5);
-- charges stay strictly positive.
ALTER TABLE point_history DROP CONSTRAINT point_history_amount_check;
ALTER TABLE point_history ADD CONSTRAINT point_history_amount_check
    CHECK (amount > 0 OR (kind = 'USE' AND amount = 0));
