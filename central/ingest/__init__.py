"""Central ingest: verify the gates' ledger batches and checkpoints, store them, ack them.

Interfaces for the rest of central (agreed with the API/rules engineer):

* ``central.ingest.worker.run_ingest(settings: IngestSettings, stop: threading.Event, *,
  rules: RuleSettings | None = None) -> IngestStats`` runs one ingest worker (MQTT v5 shared
  subscription) until ``stop`` is set, applying the ``[rules]`` section in its projections. Any
  number of workers, in any number of processes, may run at once.
* ``central.ingest.settings.load_settings(path) -> IngestSettings`` reads the [database], [mqtt],
  [witness] and [ingest] tables of the central TOML config (config/central.example.toml).
* ``central.ingest.cli.ingest`` is a Typer command function; register it in central/cli.py with
  ``app.command("ingest")(ingest)`` to get ``coalgate central ingest --config FILE``.
* In the transaction that stores verified entries the worker calls
  ``central.projections.apply(cur, site_id, entries, rules=rules)`` where ``cur`` is a psycopg 3
  cursor and ``entries`` is a list of ``central.ingest.core.VerifiedEntry``
  (``.entry: ledger.entry.Entry``, ``.seq``, ``.hash``, ``.ts: datetime``), in seq order.
  It must not commit. Alarms it raises go to the ``alarms`` table (001_core.sql). The module
  is imported lazily; until it exists the worker logs one warning and stores entries without
  projections.
* Database schema: central/migrations/001_core.sql, applied by ``central.db.migrate(conn)``.
"""
