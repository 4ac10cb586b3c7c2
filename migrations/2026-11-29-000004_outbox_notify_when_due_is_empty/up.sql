-- NOTIFY only when no other event is waiting to be claimed.
--
-- PostgreSQL serialises the commits of notifying transactions (a notifying commit holds a
-- cluster-wide lock through its WAL flush, so such commits cannot share a flush): notifying
-- on every payment made payments commit one at a time. A relay that is woken claims every
-- due event anyway, so once one event waits unclaimed, the relay has been (or is being) told
-- and further payments need not tell it again. Under load that is about one NOTIFY per relay
-- round instead of one per payment; an idle outbox still wakes the relay on the first commit.
-- A claimed event is not due (its lease moves next_attempt_at 30 s ahead), so a payment that
-- commits while the relay delivers the previous round notifies again.
CREATE OR REPLACE FUNCTION outbox_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM outbox_events o
        WHERE o.delivered_at IS NULL AND o.next_attempt_at <= now()
          AND o.id NOT IN (SELECT id FROM inserted)
    ) THEN
        PERFORM pg_notify('outbox_events', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER outbox_events_notify ON outbox_events;
CREATE TRIGGER outbox_events_notify
    AFTER INSERT ON outbox_events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();
