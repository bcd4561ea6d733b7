-- 002_api: API tokens, the weighings projection, per-site rule state, alarm dedup and
-- notification for the live alarm stream. Owned by the API / rules side of the central.

-- Bearer tokens. Only the SHA-256 of a token is stored: the token itself is shown once, at
-- creation. Tokens are 256-bit random, so a plain hash (no salt, no stretching) is enough.
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    token_hash   bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    role         text        NOT NULL
                             CHECK (role IN ('admin', 'bureau', 'enterprise', 'checkpoint',
                                             'datapool')),
    enterprise   text,
    label        text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK ((role = 'enterprise') = (enterprise IS NOT NULL))
);

-- One row per `weighing` entry, projected inside the ingest transaction (central.projections).
-- The signed entry in `entries` stays the record; this is the searchable view of it.
CREATE TABLE weighings (
    site          text        NOT NULL REFERENCES sites (id),
    seq           bigint      NOT NULL,
    ts            timestamptz NOT NULL,
    txn           text,
    pass          text        NOT NULL,
    plate         text,
    plate_conf_pm integer,
    plate_source  text,
    axles         integer,
    weight_kg     bigint,
    gross_kg      bigint,
    tare_kg       bigint,
    net_kg        bigint,
    tare_source   text,
    tare_seq      bigint,
    ticket_id     text,
    coal_type     text,
    limit_kg      bigint,
    decision      text,
    reasons       text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (site, seq)
);
CREATE INDEX weighings_ts ON weighings (ts DESC);
CREATE INDEX weighings_site_ts ON weighings (site, ts DESC);
CREATE INDEX weighings_plate_ts ON weighings (plate, ts DESC);
CREATE INDEX weighings_ticket ON weighings (ticket_id) WHERE ticket_id IS NOT NULL;
CREATE INDEX weighings_txn ON weighings (site, txn);

-- What the rules remember about a site between batches (central.rules.SiteRuleState as JSON).
CREATE TABLE site_rule_state (
    site  text  PRIMARY KEY REFERENCES sites (id),
    state jsonb NOT NULL
);

-- Storing an alarm twice (a re-run, two API instances sweeping for offline sites, the gate's
-- alarm for a fact the central derived itself) must land on one row.
ALTER TABLE alarms ADD COLUMN dedup_key text;
CREATE UNIQUE INDEX alarms_dedup ON alarms (site, dedup_key) WHERE dedup_key IS NOT NULL;

-- The API's live stream LISTENs here. Delivered at commit, so a listener never sees an alarm
-- from a transaction that rolled back. The payload is empty on purpose: listeners read the
-- alarms after the last id they sent, and PostgreSQL folds identical notifications of one
-- transaction into one, so a backlog of thousands of alarms wakes the API once, not thousands
-- of times.
CREATE FUNCTION coalgate_notify_alarm() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('coalgate_alarms', '');
    RETURN NEW;
END
$$;
CREATE TRIGGER alarms_notify AFTER INSERT ON alarms
    FOR EACH ROW EXECUTE FUNCTION coalgate_notify_alarm();
