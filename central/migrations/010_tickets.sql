-- 010_tickets: e-tickets at the central — issuer keys and the published trust list, quota
-- (approved capacity per mine per month, policy), issued tickets, uses and capacity consumption
-- from ingested weighings, and the outbox of deltas for the gates. Owned by central/tickets/.

-- Issuer keys: the central signs tickets on behalf of an enterprise's sales office. The key
-- name is the enterprise id (the ticket's iss). Rotation gives the old key a not_after and the
-- new one a not_before; removal (compromise) sets removed_at and drops it from the trust list.
CREATE TABLE ticket_issuer_keys (
    kid          text        PRIMARY KEY CHECK (kid ~ '^[0-9a-f]{8}$'),
    enterprise   text        NOT NULL,
    verifier_key text        NOT NULL UNIQUE,
    signer_key   text        NOT NULL,           -- PRIVATE+KEY+...; never leaves the central
    not_before   timestamptz NOT NULL,
    not_after    timestamptz,
    removed_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (not_after IS NULL OR not_after > not_before)
);
CREATE INDEX ticket_issuer_keys_enterprise ON ticket_issuer_keys (enterprise, not_before DESC);

-- Every trust list the central published (signed notes); the highest serial is current.
CREATE TABLE ticket_trust_lists (
    serial     integer     PRIMARY KEY CHECK (serial >= 1),
    note       text        NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now()
);

-- Quota policy: scope '*' is the deployment default, else an enterprise id overrides it.
CREATE TABLE ticket_quota_policy (
    scope      text PRIMARY KEY,
    policy     text NOT NULL CHECK (policy IN ('monitor', 'enforce')),
    updated_by text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ticket_quota_policy (scope, policy, updated_by) VALUES ('*', 'monitor', 'default');

-- Approved capacity (核定产能) per mine per month, set by the bureau.
CREATE TABLE ticket_capacity (
    enterprise  text   NOT NULL,
    period      text   NOT NULL CHECK (period ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'),
    capacity_kg bigint NOT NULL CHECK (capacity_kg >= 0),
    updated_by  text   NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (enterprise, period)
);

CREATE SEQUENCE ticket_serial;

CREATE TABLE tickets (
    id               text        PRIMARY KEY,
    enterprise       text        NOT NULL,
    site             text        NOT NULL REFERENCES sites (id),
    plate            text        NOT NULL,
    buyer            text        NOT NULL,
    destination      text        NOT NULL,
    coal_type        text        NOT NULL,
    buyer_name       text,                        -- full names for the pages (not in the QR)
    destination_name text,
    planned_net_kg   integer     NOT NULL CHECK (planned_net_kg > 0),
    quota_period     text        NOT NULL,
    valid_from       timestamptz NOT NULL,
    valid_to         timestamptz NOT NULL,
    issued_at        timestamptz NOT NULL,
    kid              text        NOT NULL REFERENCES ticket_issuer_keys (kid),
    qr               text        NOT NULL,        -- the signed CT1: text
    page_token       text        NOT NULL UNIQUE, -- the driver page's unguessable URL part
    issued_by        text        NOT NULL,
    voided_at        timestamptz,
    voided_by        text,
    void_reason      text
);
CREATE INDEX tickets_enterprise_period ON tickets (enterprise, quota_period);
CREATE INDEX tickets_site_issued ON tickets (site, issued_at DESC);
CREATE INDEX tickets_plate ON tickets (plate);

-- Every loaded weighing (gross or one-pass) that named a ticket, at any gate. A ticket with
-- two rows here was used twice (ticket_reused). ticket_id may be one the central never issued.
CREATE TABLE ticket_uses (
    site      text        NOT NULL,
    seq       bigint      NOT NULL,
    ticket_id text        NOT NULL,
    ts        timestamptz NOT NULL,
    PRIMARY KEY (site, seq)
);
CREATE INDEX ticket_uses_ticket ON ticket_uses (ticket_id);

-- Capacity consumed: the actual net of each loaded weighing at a mine's sites, counted once.
CREATE TABLE ticket_consumption (
    site       text   NOT NULL,
    seq        bigint NOT NULL,
    enterprise text   NOT NULL,
    period     text   NOT NULL,
    net_kg     bigint NOT NULL CHECK (net_kg >= 0),
    ticket_id  text,
    PRIMARY KEY (site, seq)
);
CREATE INDEX ticket_consumption_period ON ticket_consumption (enterprise, period);

-- Per-site ticket policy as the gate announced it in its `config` entries.
CREATE TABLE ticket_site_policy (
    site            text    PRIMARY KEY,
    ticket_required boolean NOT NULL
);

-- Deltas for the gates (docs/tickets.md §6), written in the same transaction as the change
-- (issue, void, use, trust list) and published by central.tickets.distribution.
CREATE TABLE ticket_outbox (
    id           bigserial   PRIMARY KEY,
    site         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX ticket_outbox_pending ON ticket_outbox (id) WHERE published_at IS NULL;

-- What the publisher has sent each site: the trust-list serial, and whether it has seen the
-- site online since its last snapshot (a gate back online gets its revocations again, in case
-- the broker dropped queued messages beyond max_queued_messages).
CREATE TABLE ticket_site_sync (
    site         text    PRIMARY KEY,
    trust_serial integer NOT NULL DEFAULT 0,
    synced       boolean NOT NULL DEFAULT false
);
