-- Wakes the outbox relays when events are committed, so they need not poll.
-- One notification per inserting statement; PostgreSQL delivers it at commit (never for a
-- rolled-back transaction) and folds duplicates within a transaction, so a payment costs
-- no extra round trip. The payload is empty: a relay only learns that work may be due.
CREATE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_events_notify
    AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();
