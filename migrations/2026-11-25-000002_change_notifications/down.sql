DROP TRIGGER enrichment_log_notify_change ON enrichment_log;
DROP TRIGGER outreach_message_notify_change ON outreach_message;
DROP TRIGGER contact_notify_change ON contact;
DROP TRIGGER business_notify_change ON business;
DROP FUNCTION letip_notify_change();
