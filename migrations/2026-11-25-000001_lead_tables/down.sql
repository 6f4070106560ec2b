-- The lead tables are the original backend's and hold its data: this service never drops
-- them. Reverting this migration only forgets that it ran.
SELECT 1;
