-- 011_loading_site: a gate's loading site. Each weighbridge is its own ledger site (id, key,
-- MQTT topics), but an e-ticket names the loading site (the mine); a mine with two weighbridges
-- enrols both with the same loading_site, and a ticket for that loading site is valid at both.
-- Owned by central/tickets/ (docs/tickets.md "Loading sites").

ALTER TABLE sites ADD COLUMN loading_site text
    CHECK (loading_site ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$');
UPDATE sites SET loading_site = id;

-- Default: the site's own id. A column default cannot refer to another column, so a trigger
-- fills it in: every enrolment path (API, CLI, ingest helper, demo) gets it without knowing.
CREATE FUNCTION sites_default_loading_site() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.loading_site IS NULL THEN
        NEW.loading_site := NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sites_default_loading_site BEFORE INSERT OR UPDATE ON sites
    FOR EACH ROW EXECUTE FUNCTION sites_default_loading_site();
ALTER TABLE sites ALTER COLUMN loading_site SET NOT NULL;
CREATE INDEX sites_loading_site ON sites (loading_site);

-- A ticket names a loading site, which need not be any one gate's id (e.g. the mine "yl-03"
-- served by gates "yl-03-east" and "yl-03-west"); issuance checks the enterprise has a gate
-- there instead of this foreign key.
ALTER TABLE tickets DROP CONSTRAINT IF EXISTS tickets_site_fkey;
