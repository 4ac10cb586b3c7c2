-- The retention purge of delivered events reads them oldest first, in batches.
CREATE INDEX outbox_events_delivered ON outbox_events (delivered_at) WHERE delivered_at IS NOT NULL;
