-- 015_overrides_rechecks: operator overrides as facts at the central (issue 12).
--
-- A held weighing the operator released by hand, and a weighing the operator voided, are marked
-- on its `weighings` row by the seq of the `override` entry that did it. Tonnage and quota read
-- these: a hand release counts as released by hand, a voided weighing never counts.
-- Owned by central/tickets/reconcile.py (docs/tickets.md "Reconciliation").

ALTER TABLE weighings ADD COLUMN hand_released_seq bigint;
ALTER TABLE weighings ADD COLUMN voided_seq bigint;

-- Rejected MQTT messages are cleaned up by age and count (central.ingest.store.prune_rejected).
CREATE INDEX rejected_messages_received ON rejected_messages (received_at);
