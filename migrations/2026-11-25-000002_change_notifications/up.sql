-- Every committed change to the lead tables is announced on the channel `letip_change`,
-- from inside the writing transaction (PostgreSQL delivers it at commit, never for a
-- rollback). Each service instance listens and invalidates what the change touches in
-- the shared cache, so a writer that cannot reach Redis still gets its writes seen.
--
-- Payload (JSON, well under NOTIFY's 8000 bytes):
--   {"o": origin, "t": "business", "op": "insert|update|delete", "id": 1,
--    "f": [[city, industry, status], ...]}           the row's filter values before/after
--   {"o": origin, "t": "contact|message|log", "b": business_id}
-- `o` is the session setting letip.origin (each service instance sets its own, so it can
-- skip what it already invalidated itself); a session that sets letip.quiet = 'on' (the
-- seeder, which announces one reset at the end) sends nothing.

-- Waiting behind a long transaction would queue the original backend's writes behind
-- this one; fail instead (the server retries the migrations).
SET LOCAL lock_timeout = '5s';

CREATE OR REPLACE FUNCTION letip_notify_change() RETURNS trigger AS $$
DECLARE
    origin  text := coalesce(current_setting('letip.origin', true), '');
    payload text;
    facets  jsonb := '[]'::jsonb;
BEGIN
    IF coalesce(current_setting('letip.quiet', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'business' THEN
        IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            facets := facets || jsonb_build_array(jsonb_build_array(
                OLD.city, OLD.industry, OLD.enrichment_status));
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            facets := facets || jsonb_build_array(jsonb_build_array(
                NEW.city, NEW.industry, NEW.enrichment_status));
        END IF;
        payload := jsonb_build_object('o', origin, 't', 'business', 'op', lower(TG_OP),
            'id', coalesce(NEW.id, OLD.id), 'f', facets)::text;
        -- Filter values too long for one notification: receivers treat the row as able
        -- to appear in any list.
        IF octet_length(payload) > 7000 THEN
            payload := jsonb_build_object('o', origin, 't', 'business', 'op', lower(TG_OP),
                'id', coalesce(NEW.id, OLD.id), 'f', '[]'::jsonb)::text;
        END IF;
    ELSE
        IF TG_OP = 'UPDATE' AND NEW IS NOT DISTINCT FROM OLD THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.business_id <> OLD.business_id THEN
            PERFORM pg_notify('letip_change', jsonb_build_object('o', origin,
                't', TG_ARGV[0], 'b', OLD.business_id)::text);
        END IF;
        payload := jsonb_build_object('o', origin, 't', TG_ARGV[0],
            'b', coalesce(NEW.business_id, OLD.business_id))::text;
    END IF;
    -- Identical payloads within one transaction are delivered once (a cascade deleting
    -- many contacts of one business announces it once).
    PERFORM pg_notify('letip_change', payload);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER business_notify_change AFTER INSERT OR UPDATE OR DELETE ON business
    FOR EACH ROW EXECUTE FUNCTION letip_notify_change();
CREATE TRIGGER contact_notify_change AFTER INSERT OR UPDATE OR DELETE ON contact
    FOR EACH ROW EXECUTE FUNCTION letip_notify_change('contact');
CREATE TRIGGER outreach_message_notify_change AFTER INSERT OR UPDATE OR DELETE ON outreach_message
    FOR EACH ROW EXECUTE FUNCTION letip_notify_change('message');
CREATE TRIGGER enrichment_log_notify_change AFTER INSERT OR UPDATE OR DELETE ON enrichment_log
    FOR EACH ROW EXECUTE FUNCTION letip_notify_change('log');
