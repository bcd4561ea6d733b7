"""``coalgate central ingest``: run one ingest worker (registered by central/cli.py)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from central.db import DatabaseError

__all__ = ["ingest"]


def ingest(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="central TOML config file")
    ] = Path("config/central.toml"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every batch")] = False,
) -> None:
    """Run one ingest worker: verify gate ledgers from MQTT and store them in PostgreSQL.

    Start as many as the load needs, on any machines: they share the MQTT v5 subscription
    and serialise per site in the database. Stops cleanly on Ctrl-C or SIGTERM. Reads the
    same file as `coalgate central serve` ([database], [mqtt], [witness], [ingest] and the
    [rules] the projections apply), with the same COALGATE_CENTRAL__* overrides.

    Example:
        coalgate central ingest --config /etc/coalgate/central.toml
    """
    from central.ingest.worker import run_ingest
    from central.settings import SettingsError, load_settings

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(config)
    except SettingsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stats = run_ingest(settings.ingest, stop, rules=settings.rules)
    except DatabaseError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"ingest stopped: {stats.stored} entries stored, {stats.duplicates} duplicates, "
        f"{stats.rejected} refused, {stats.malformed} malformed"
    )
