"""ledger — signed records, RFC 6962 Merkle log, C2SP checkpoints, and the SQLite store.

Modules (see docs/ledger-api.md for the contract other packages import):
  errors      one error tree, rooted at ``LedgerError``
  keys        C2SP signed-note Ed25519 keys and key files
  canonical   RFC 8785 (JCS) bytes of ledger values, fast and identical to `rfc8785`
  entry       canonical (RFC 8785) entries, leaf hashes, per-entry signatures
  merkle      RFC 6962/9162 roots, inclusion and consistency proofs (node-store and list form)
  note        C2SP signed notes
  checkpoint  tlog-checkpoint and tlog-cosignature
  store       the append-only SQLite ledger (the edge's outbox); audit: its full verification
"""
