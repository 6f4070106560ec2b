-- The lead tables exactly as the original backend's Prisma migration made them: quoted
-- names, `TIMESTAMP(3)` without time zone holding UTC, `updated_at` with no default (the
-- writer sets it), plain text status columns with no CHECK, no length limit anywhere.
-- Reports and the original backend read and write these tables, so this service adopts
-- them as they are: on a database that backend made, every statement below finds its
-- object and changes nothing; on an empty database it makes the same schema. Later
-- migrations only add (functions, triggers); indexes are built concurrently at start
-- (crates/store/src/indexes.rs), so that building one never blocks writers.

CREATE TABLE IF NOT EXISTS "business" (
    "id" SERIAL NOT NULL,
    "name" TEXT NOT NULL,
    "address" TEXT,
    "city" TEXT,
    "state" TEXT DEFAULT 'NJ',
    "zip" TEXT,
    "phone" TEXT,
    "website" TEXT,
    "business_type" TEXT,
    "industry" TEXT,
    "employee_count" INTEGER,
    "year_founded" INTEGER,
    "google_maps_url" TEXT,
    "latitude" DOUBLE PRECISION,
    "longitude" DOUBLE PRECISION,
    "enrichment_status" TEXT NOT NULL DEFAULT 'pending',
    "source" TEXT NOT NULL DEFAULT 'google_maps',
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "business_pkey" PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS "contact" (
    "id" SERIAL NOT NULL,
    "business_id" INTEGER NOT NULL,
    "name" TEXT,
    "title" TEXT,
    "email" TEXT,
    "email_verified" BOOLEAN DEFAULT false,
    "phone" TEXT,
    "linkedin_url" TEXT,
    "is_primary" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "contact_pkey" PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS "enrichment_log" (
    "id" SERIAL NOT NULL,
    "business_id" INTEGER NOT NULL,
    "service" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "request_data" TEXT,
    "response_data" TEXT,
    "error_message" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "enrichment_log_pkey" PRIMARY KEY ("id")
);

CREATE TABLE IF NOT EXISTS "outreach_message" (
    "id" SERIAL NOT NULL,
    "business_id" INTEGER NOT NULL,
    "contact_id" INTEGER,
    "message_text" TEXT NOT NULL,
    "generated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "sent_at" TIMESTAMP(3),
    "status" TEXT NOT NULL DEFAULT 'generated',

    CONSTRAINT "outreach_message_pkey" PRIMARY KEY ("id")
);

-- The original foreign keys, added only where missing (ALTER TABLE has no IF NOT EXISTS
-- for constraints). On an adopted database they all exist and nothing is locked.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN SELECT * FROM (VALUES
        ('contact', 'contact_business_id_fkey',
         'FOREIGN KEY ("business_id") REFERENCES "business"("id") ON DELETE CASCADE ON UPDATE CASCADE'),
        ('enrichment_log', 'enrichment_log_business_id_fkey',
         'FOREIGN KEY ("business_id") REFERENCES "business"("id") ON DELETE CASCADE ON UPDATE CASCADE'),
        ('outreach_message', 'outreach_message_business_id_fkey',
         'FOREIGN KEY ("business_id") REFERENCES "business"("id") ON DELETE CASCADE ON UPDATE CASCADE'),
        ('outreach_message', 'outreach_message_contact_id_fkey',
         'FOREIGN KEY ("contact_id") REFERENCES "contact"("id") ON DELETE SET NULL ON UPDATE CASCADE')
    ) AS t(tab, name, def)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = fk.name
                       AND conrelid = format('%I', fk.tab)::regclass) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I %s', fk.tab, fk.name, fk.def);
        END IF;
    END LOOP;
END;
$$;
