DROP TABLE outreach_message;
DROP TABLE enrichment_log;
DROP TABLE contact;
DROP TABLE business;
DROP FUNCTION letip_set_updated_at();
