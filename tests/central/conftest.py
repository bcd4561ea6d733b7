"""Fixtures for the central ingest and sync tests: real PostgreSQL, real Mosquitto.

The machinery lives in tests.support; importing the fixtures here makes them available to
every test in this package (``pg_url``, ``system_broker``, ``mosquitto``).
"""

from __future__ import annotations

from tests.support.broker import mosquitto, system_broker
from tests.support.pg import pg_url

__all__ = ["mosquitto", "pg_url", "system_broker"]
