-- Ticket issuance is idempotent per enterprise: a request carrying an Idempotency-Key returns
-- the ticket the first request with that key issued (a second click, a retried POST), never a
-- second ticket. request_hash is SHA-256 of the request's normalised fields, so the same key
-- reused for a different trip is refused instead of silently answered with the old ticket.
ALTER TABLE tickets ADD COLUMN idempotency_key text;
ALTER TABLE tickets ADD COLUMN request_hash text;
CREATE UNIQUE INDEX tickets_idempotency ON tickets (enterprise, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
