-- The lead tables keep the original backend's table and column names: reports and other
-- services read this database directly.

CREATE FUNCTION letip_set_updated_at() RETURNS trigger AS $$
BEGIN
    -- An UPDATE that changes nothing keeps its timestamp.
    IF NEW IS DISTINCT FROM OLD THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE business (
    id                serial PRIMARY KEY,
    name              text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 255),
    address           text,
    city              text,
    state             text NOT NULL DEFAULT 'NJ',
    zip               text,
    phone             text,
    website           text,
    business_type     text,
    industry          text,
    employee_count    integer CHECK (employee_count >= 0),
    year_founded      integer,
    google_maps_url   text,
    latitude          double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude         double precision CHECK (longitude BETWEEN -180 AND 180),
    enrichment_status text NOT NULL DEFAULT 'pending'
                      CHECK (enrichment_status IN ('pending', 'enriched', 'failed')),
    source            text NOT NULL DEFAULT 'google_maps',
    -- Millisecond precision: what is stored is exactly what the API shows.
    created_at        timestamptz(3) NOT NULL DEFAULT now(),
    updated_at        timestamptz(3) NOT NULL DEFAULT now()
);

-- The list is ordered newest first with the id as tie-breaker; each filter has an index
-- that serves both its count and its page in that order.
CREATE INDEX business_created_idx ON business (created_at DESC, id DESC);
CREATE INDEX business_city_created_idx ON business (city, created_at DESC, id DESC);
CREATE INDEX business_industry_created_idx ON business (industry, created_at DESC, id DESC);
CREATE INDEX business_status_created_idx
    ON business (enrichment_status, created_at DESC, id DESC);

CREATE TRIGGER business_set_updated_at BEFORE UPDATE ON business
    FOR EACH ROW EXECUTE FUNCTION letip_set_updated_at();

CREATE TABLE contact (
    id             serial PRIMARY KEY,
    business_id    integer NOT NULL REFERENCES business (id) ON DELETE CASCADE,
    name           text,
    title          text,
    email          text,
    email_verified boolean NOT NULL DEFAULT false,
    phone          text,
    linkedin_url   text,
    is_primary     boolean NOT NULL DEFAULT false,
    created_at     timestamptz(3) NOT NULL DEFAULT now(),
    updated_at     timestamptz(3) NOT NULL DEFAULT now()
);

-- Serves the contacts of a business (detail and list pages) and the cascade.
CREATE INDEX contact_business_idx ON contact (business_id, id);

CREATE TRIGGER contact_set_updated_at BEFORE UPDATE ON contact
    FOR EACH ROW EXECUTE FUNCTION letip_set_updated_at();

CREATE TABLE enrichment_log (
    id            serial PRIMARY KEY,
    business_id   integer NOT NULL REFERENCES business (id) ON DELETE CASCADE,
    service       text NOT NULL,
    status        text NOT NULL,
    request_data  jsonb,
    response_data jsonb,
    error_message text,
    created_at    timestamptz(3) NOT NULL DEFAULT now()
);

-- Serves the 10 newest logs of a business and the cascade.
CREATE INDEX enrichment_log_business_idx ON enrichment_log (business_id, created_at DESC, id DESC);

CREATE TABLE outreach_message (
    id           serial PRIMARY KEY,
    business_id  integer NOT NULL REFERENCES business (id) ON DELETE CASCADE,
    contact_id   integer REFERENCES contact (id) ON DELETE SET NULL,
    message_text text NOT NULL,
    generated_at timestamptz(3) NOT NULL DEFAULT now(),
    sent_at      timestamptz(3),
    status       text NOT NULL DEFAULT 'generated'
                 CHECK (status IN ('generated', 'sent', 'failed'))
);

-- Serves the 5 newest messages of a business and the cascade.
CREATE INDEX outreach_message_business_idx
    ON outreach_message (business_id, generated_at DESC, id DESC);
-- Serves ON DELETE SET NULL when a contact goes.
CREATE INDEX outreach_message_contact_idx ON outreach_message (contact_id)
    WHERE contact_id IS NOT NULL;
-- Serves the stats counts by status.
CREATE INDEX outreach_message_status_idx ON outreach_message (status);
