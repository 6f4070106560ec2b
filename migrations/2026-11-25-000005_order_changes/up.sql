-- Lists cache a page as its ids and each business's row on its own, so an update that
-- keeps a business's filter values (city, industry, status) changes only its row, and
-- receivers of the change feed invalidate only that. An update that moves a business's
-- place in the list order (its `created_at`, or its id) is announced with unknown
-- filter values instead, so receivers invalidate every list; a changed id is also
-- announced as the delete of the old one. Replacing the function takes no table lock.

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
        -- A row whose place in the lists moved (its creation time or id changed) may
        -- have moved on any page of any list: receivers treat its lists as unknown.
        IF TG_OP = 'UPDATE' AND (NEW.created_at IS DISTINCT FROM OLD.created_at
                                 OR NEW.id <> OLD.id) THEN
            facets := '[]'::jsonb;
        END IF;
        IF TG_OP = 'UPDATE' AND NEW.id <> OLD.id THEN
            PERFORM pg_notify('letip_change', jsonb_build_object('o', origin,
                't', 'business', 'op', 'delete', 'id', OLD.id, 'f', '[]'::jsonb)::text);
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
