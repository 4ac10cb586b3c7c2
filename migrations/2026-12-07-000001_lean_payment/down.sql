ALTER TABLE outbox_events ALTER COLUMN payload TYPE jsonb USING payload::jsonb;
ALTER TABLE point_history
    ADD CONSTRAINT point_history_user_id_fkey FOREIGN KEY (user_id) REFERENCES point_wallets (user_id),
    ADD CONSTRAINT point_history_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id);
ALTER TABLE order_lines
    ADD CONSTRAINT order_lines_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id),
    ADD CONSTRAINT order_lines_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id);
CREATE INDEX order_lines_by_product ON order_lines (product_id);
