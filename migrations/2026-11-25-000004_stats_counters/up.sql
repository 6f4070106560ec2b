-- The dashboard's six counters, kept by PostgreSQL itself so that stats cost one read of
-- a few rows instead of counting every row. Statement-level triggers with transition
-- tables update them inside the writing transaction, for every writer: this service,
-- the original backend, scripts, psql, COPY. A statement adds its deltas to one of 16
-- rows, chosen by its session (so concurrent writers rarely wait for one row lock, and
-- one transaction always updates the same row); stats is the sum of the rows. A
-- statement that changes no counter (most updates) touches none.
--
-- Invariant: at every commit, the sums equal the counts of the tables:
--   businesses = count(business), enriched / pending = count(business) by status,
--   contacts = count(contact), messages_sent / messages_generated = count(outreach_message)
--   by status. Only writes with these triggers disabled (session_replication_role =
--   replica, ALTER TABLE ... DISABLE TRIGGER) break it: `letip recount-stats` restores it.

-- Waiting behind a long transaction would queue the original backend's writes behind
-- this one; fail instead (the server retries the migrations).
SET LOCAL lock_timeout = '5s';

CREATE TABLE letip_stats (
    slot               integer PRIMARY KEY,
    businesses         bigint NOT NULL DEFAULT 0,
    enriched           bigint NOT NULL DEFAULT 0,
    pending            bigint NOT NULL DEFAULT 0,
    contacts           bigint NOT NULL DEFAULT 0,
    messages_sent      bigint NOT NULL DEFAULT 0,
    messages_generated bigint NOT NULL DEFAULT 0
);
INSERT INTO letip_stats (slot) SELECT generate_series(0, 15);

-- Adds deltas to this session's row.
CREATE OR REPLACE FUNCTION letip_stats_add(
    d_businesses bigint, d_enriched bigint, d_pending bigint,
    d_contacts bigint, d_sent bigint, d_generated bigint) RETURNS void AS $$
BEGIN
    IF d_businesses = 0 AND d_enriched = 0 AND d_pending = 0 AND d_contacts = 0
       AND d_sent = 0 AND d_generated = 0 THEN
        RETURN;
    END IF;
    UPDATE letip_stats SET
        businesses = businesses + d_businesses,
        enriched = enriched + d_enriched,
        pending = pending + d_pending,
        contacts = contacts + d_contacts,
        messages_sent = messages_sent + d_sent,
        messages_generated = messages_generated + d_generated
    WHERE slot = pg_backend_pid() % 16;
END;
$$ LANGUAGE plpgsql;

-- Recounts every counter from the tables. Writers wait while it counts (SHARE locks), so
-- that no write can fall between the count and the reset.
CREATE OR REPLACE FUNCTION letip_recount_stats() RETURNS void AS $$
BEGIN
    LOCK TABLE business, contact, outreach_message IN SHARE MODE;
    UPDATE letip_stats SET businesses = 0, enriched = 0, pending = 0, contacts = 0,
        messages_sent = 0, messages_generated = 0;
    UPDATE letip_stats SET
        businesses = b.total, enriched = b.enriched, pending = b.pending,
        contacts = c.total, messages_sent = m.sent, messages_generated = m.generated
    FROM (SELECT count(*) AS total,
                 count(*) FILTER (WHERE enrichment_status = 'enriched') AS enriched,
                 count(*) FILTER (WHERE enrichment_status = 'pending') AS pending
          FROM business) AS b,
         (SELECT count(*) AS total FROM contact) AS c,
         (SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
                 count(*) FILTER (WHERE status = 'generated') AS generated
          FROM outreach_message) AS m
    WHERE slot = 0;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION letip_count_business() RETURNS trigger AS $$
DECLARE
    t bigint := 0; e bigint := 0; p bigint := 0;
    t2 bigint := 0; e2 bigint := 0; p2 bigint := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT count(*), count(*) FILTER (WHERE enrichment_status = 'enriched'),
               count(*) FILTER (WHERE enrichment_status = 'pending')
        INTO t, e, p FROM new_rows;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT count(*), count(*) FILTER (WHERE enrichment_status = 'enriched'),
               count(*) FILTER (WHERE enrichment_status = 'pending')
        INTO t2, e2, p2 FROM old_rows;
    END IF;
    PERFORM letip_stats_add(t - t2, e - e2, p - p2, 0, 0, 0);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION letip_count_contact() RETURNS trigger AS $$
DECLARE
    n bigint := 0;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO n FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT -count(*) INTO n FROM old_rows;
    END IF;
    PERFORM letip_stats_add(0, 0, 0, n, 0, 0);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION letip_count_message() RETURNS trigger AS $$
DECLARE
    s bigint := 0; g bigint := 0; s2 bigint := 0; g2 bigint := 0;
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT count(*) FILTER (WHERE status = 'sent'),
               count(*) FILTER (WHERE status = 'generated')
        INTO s, g FROM new_rows;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        SELECT count(*) FILTER (WHERE status = 'sent'),
               count(*) FILTER (WHERE status = 'generated')
        INTO s2, g2 FROM old_rows;
    END IF;
    PERFORM letip_stats_add(0, 0, 0, 0, s - s2, g - g2);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- A trigger with transition tables fires on one event, so each table has three, plus one
-- that recounts after a TRUNCATE (which fires no row or delete trigger).
CREATE OR REPLACE FUNCTION letip_recount_after_truncate() RETURNS trigger AS $$
BEGIN
    PERFORM letip_recount_stats();
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER letip_business_count_insert AFTER INSERT ON "business"
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION letip_count_business();
CREATE TRIGGER letip_business_count_update AFTER UPDATE ON "business"
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION letip_count_business();
CREATE TRIGGER letip_business_count_delete AFTER DELETE ON "business"
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION letip_count_business();
CREATE TRIGGER letip_business_count_truncate AFTER TRUNCATE ON "business"
    FOR EACH STATEMENT EXECUTE FUNCTION letip_recount_after_truncate();

CREATE TRIGGER letip_contact_count_insert AFTER INSERT ON "contact"
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION letip_count_contact();
CREATE TRIGGER letip_contact_count_delete AFTER DELETE ON "contact"
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION letip_count_contact();
CREATE TRIGGER letip_contact_count_truncate AFTER TRUNCATE ON "contact"
    FOR EACH STATEMENT EXECUTE FUNCTION letip_recount_after_truncate();

CREATE TRIGGER letip_message_count_insert AFTER INSERT ON "outreach_message"
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION letip_count_message();
CREATE TRIGGER letip_message_count_update AFTER UPDATE ON "outreach_message"
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION letip_count_message();
CREATE TRIGGER letip_message_count_delete AFTER DELETE ON "outreach_message"
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION letip_count_message();
CREATE TRIGGER letip_message_count_truncate AFTER TRUNCATE ON "outreach_message"
    FOR EACH STATEMENT EXECUTE FUNCTION letip_recount_after_truncate();

-- The rows already there (an adopted database). The triggers above hold SHARE ROW
-- EXCLUSIVE locks on the tables until this transaction commits, so no write falls
-- between them and this count.
SELECT letip_recount_stats();
