DROP TRIGGER letip_contact_touch_updated_at ON "contact";
DROP TRIGGER letip_business_touch_updated_at ON "business";
DROP FUNCTION letip_touch_updated_at();
