-- `updated_at` has no default, and the original backend sets it itself on every write.
-- These triggers keep it right for every other writer (this service, scripts, psql): a
-- row that changes, and whose writer did not set `updated_at`, gets the current UTC time;
-- a writer that sets it (the original backend) keeps its value; an update that changes
-- nothing keeps the timestamp.

-- Waiting behind a long transaction would queue the original backend's writes behind
-- this one; fail instead (the server retries the migrations).
SET LOCAL lock_timeout = '5s';

CREATE OR REPLACE FUNCTION letip_touch_updated_at() RETURNS trigger AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := timezone('UTC', now())::timestamp(3);
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER letip_business_touch_updated_at BEFORE UPDATE ON "business"
    FOR EACH ROW EXECUTE FUNCTION letip_touch_updated_at();
CREATE TRIGGER letip_contact_touch_updated_at BEFORE UPDATE ON "contact"
    FOR EACH ROW EXECUTE FUNCTION letip_touch_updated_at();
