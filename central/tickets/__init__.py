"""E-tickets at the central: issuance against quota, issuer keys and the trust list, the driver
page, distribution to gates and reconciliation of ingested weighings (docs/tickets.md §7, §9).

Modules: ``rules`` (pure quota and reconciliation rules), ``service`` (data layer), ``issuers``,
``reconcile`` (ingest hook), ``distribution`` (MQTT publisher), ``api`` (``router``), ``pages``
(``pages_router``), ``cli``, ``settings``, ``errors``.
"""
