-- 001_core: sites, verified ledger entries, Merkle nodes, checkpoints, site state, alarms.
--
-- Applied once, in one transaction, by central.db.migrate(); the runner records it in
-- schema_migrations. Never edit an applied migration: add 00N_*.sql instead.
--
-- Conventions: site ids are text; hashes, leaves and signatures are bytea; times are timestamptz.
-- Only entries that passed verification (signature, canonical form, prev chain, seq continuity)
-- are ever written to `entries`; anything refused goes to `rejected_messages` and `alarms`.

CREATE TABLE sites (
    id           text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    enterprise   text NOT NULL,
    name         text NOT NULL,
    lat          double precision CHECK (lat BETWEEN -90 AND 90),
    lon          double precision CHECK (lon BETWEEN -180 AND 180),
    -- C2SP signed-note verifier key text: name+keyid+base64(0x01||pub)
    verifier_key text NOT NULL,
    enrolled_at  timestamptz NOT NULL DEFAULT now()
);

-- Verified ledger entries. (site, seq) is unique: the ingest serialises per site
-- (SELECT ... FOR UPDATE on site_state) and the level-0 row of merkle_nodes, written in the same
-- transaction, has the unpartitioned primary key (site, 0, seq). The table's own key must include
-- the partitioning column (a PostgreSQL and TimescaleDB rule), hence (site, seq, ts).
-- `ts` is the gate's clock; `received_at` the central's.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        CREATE TABLE entries (
            site        text        NOT NULL REFERENCES sites (id),
            seq         bigint      NOT NULL CHECK (seq >= 0),
            ts          timestamptz NOT NULL,
            kind        text        NOT NULL,
            leaf        bytea       NOT NULL,
            hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
            sig         bytea       NOT NULL CHECK (octet_length(sig) = 64),
            body        jsonb       NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (site, seq, ts)
        );
        PERFORM create_hypertable('entries', 'ts', chunk_time_interval => interval '7 days');
    ELSE
        CREATE TABLE entries (
            site        text        NOT NULL REFERENCES sites (id),
            seq         bigint      NOT NULL CHECK (seq >= 0),
            ts          timestamptz NOT NULL,
            kind        text        NOT NULL,
            leaf        bytea       NOT NULL,
            hash        bytea       NOT NULL CHECK (octet_length(hash) = 32),
            sig         bytea       NOT NULL CHECK (octet_length(sig) = 64),
            body        jsonb       NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (site, seq, ts)
        ) PARTITION BY RANGE (ts);
        -- Catches timestamps outside any monthly partition (a gate clock far off, say).
        CREATE TABLE entries_default PARTITION OF entries DEFAULT;
    END IF;
END
$$;

CREATE INDEX entries_site_seq ON entries (site, seq);
CREATE INDEX entries_kind_ts ON entries (kind, ts);

-- Monthly partition for the month holding `at`; a no-op under TimescaleDB (chunks are automatic)
-- or when it exists. The ingest calls it before the first insert of a new month, outside the
-- entry transaction (creating a partition locks the parent table).
CREATE FUNCTION coalgate_ensure_entries_partition(at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    lo   timestamptz := date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi   timestamptz := lo + interval '1 month';
    part text := 'entries_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                   WHERE c.relname = 'entries') THEN
        RETURN;
    END IF;
    -- Two ingest workers may race to create the same month.
    PERFORM pg_advisory_xact_lock(hashtext('coalgate_entries_partition'));
    IF to_regclass(part) IS NOT NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM entries_default WHERE ts >= lo AND ts < hi) THEN
        -- Rows already sit in the default partition; leave them there (queries are the same).
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF entries FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
END
$$;

-- RFC 6962 complete subtrees per site: (level, idx) covers leaves [idx*2^level, (idx+1)*2^level).
-- Level 0 holds the entry hashes. Read by ledger.merkle.root_at / inclusion_proof_at /
-- consistency_proof_at through a NodeReader, so proofs are O(log n) row reads.
CREATE TABLE merkle_nodes (
    site  text     NOT NULL REFERENCES sites (id),
    level smallint NOT NULL CHECK (level >= 0 AND level < 64),
    idx   bigint   NOT NULL CHECK (idx >= 0),
    hash  bytea    NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (site, level, idx)
);

-- Site checkpoints the central verified (signature + consistency with the previous one) and
-- cosigned as witness. `note` is the site's signed note, `cosigned` the same with our cosignature.
CREATE TABLE checkpoints (
    site        text        NOT NULL REFERENCES sites (id),
    size        bigint      NOT NULL CHECK (size >= 0),
    root        bytea       NOT NULL CHECK (octet_length(root) = 32),
    note        text        NOT NULL,
    cosigned    text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, size)
);

-- One row per enrolled site; the ingest locks it (FOR UPDATE) to serialise a site's writes.
-- verified_seq is the highest contiguous verified seq (-1: nothing yet); head_hash its entry hash.
CREATE TABLE site_state (
    site            text PRIMARY KEY REFERENCES sites (id),
    verified_seq    bigint      NOT NULL DEFAULT -1 CHECK (verified_seq >= -1),
    head_hash       bytea CHECK (head_hash IS NULL OR octet_length(head_hash) = 32),
    checkpoint_size bigint,                       -- latest cosigned checkpoint (NULL: none)
    last_seen       timestamptz,                  -- any message from the site
    online          boolean     NOT NULL DEFAULT false,
    last_status     jsonb,                        -- last `status` payload
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Alarms raised by the central (tamper, gap, offline) and by the rules/projections.
CREATE TABLE alarms (
    id          bigserial PRIMARY KEY,
    site        text        NOT NULL,             -- may name an unenrolled site (tamper_topic)
    code        text        NOT NULL,
    severity    text        NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    seq         bigint,
    txn         text,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    state       text        NOT NULL DEFAULT 'open'
                            CHECK (state IN ('open', 'acknowledged', 'resolved')),
    ack_by      text,
    ack_at      timestamptz,
    resolved_by text,
    resolved_at timestamptz,
    note        text
);
CREATE INDEX alarms_open ON alarms (raised_at DESC) WHERE state <> 'resolved';
CREATE INDEX alarms_site_raised ON alarms (site, raised_at DESC);
CREATE INDEX alarms_code ON alarms (code);

-- Messages the ingest refused (bad signature, wrong topic, malformed, fork), kept for forensics.
CREATE TABLE rejected_messages (
    id          bigserial PRIMARY KEY,
    site        text,
    topic       text        NOT NULL,
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    payload     bytea       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_messages_site ON rejected_messages (site, received_at DESC);
