DROP INDEX outbox_events_delivered;
