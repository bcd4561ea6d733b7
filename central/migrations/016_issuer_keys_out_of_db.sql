-- 016_issuer_keys_out_of_db: issuer private keys leave PostgreSQL (issue 12). New keys go to
-- the configured key store (central.tickets.keystore) and this column stays NULL; keys still
-- here are moved out by central.tickets.keystore.move_db_keys_to_store (at start, on first
-- use, or `coalgate central tickets migrate-issuer-keys`), which needs the key directory and
-- so cannot run in SQL. Owned by central/tickets/.
ALTER TABLE ticket_issuer_keys ALTER COLUMN signer_key DROP NOT NULL;
COMMENT ON COLUMN ticket_issuer_keys.signer_key IS
    'legacy: private key before migration 016; NULL once moved to the issuer key store';
