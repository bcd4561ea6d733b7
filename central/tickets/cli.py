"""``coalgate central tickets``: run the ticket publisher, manage issuer keys, print the trust list.

Each command opens the central's database from the central config, calls one library function
and turns typed errors into words. Mount with ``app.add_typer(tickets_app, name="tickets")``.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from central import db
from central.settings import SettingsError, load_settings
from central.tickets import issuers
from central.tickets.distribution import TicketPublisher
from central.tickets.errors import CentralTicketError
from central.tickets.settings import TicketSettings
from ledger.errors import LedgerError

app = typer.Typer(help="E-tickets at the central: publisher, issuer keys, trust list.",
                  no_args_is_help=True, add_completion=False)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Central config (TOML).")]


def _fail(msg: str) -> SystemExit:
    typer.echo(f"error: {msg}", err=True)
    return SystemExit(2)


def _url(config: Path | None) -> str:
    try:
        settings = load_settings(config)
        return db.resolve_url(settings.ingest.database)
    except (SettingsError, db.DatabaseError) as exc:
        raise _fail(str(exc)) from None


@app.command()
def publish(config: ConfigOpt = None, interval: float = 0.5,
            client_id: str = "central-tickets") -> None:
    """Publish queued ticket deltas (issued, revoked, used, trust list) to the gates over MQTT
    until interrupted. Several may run at once.

    Example: coalgate central tickets publish --config /etc/coalgate/central.toml
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = load_settings(config)
    url = _url(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with TicketPublisher(url, settings.ingest.mqtt, client_id=client_id) as pub:
        pub.run(stop, interval)
    typer.echo(f"published {pub.published} deltas")


@app.command("issuer-key")
def issuer_key(enterprise: Annotated[str, typer.Argument(help="Enterprise id (ticket iss).")],
               config: ConfigOpt = None) -> None:
    """Create (or rotate) an enterprise's issuer key and publish the new trust list. Needs the
    bureau trust-root key: ``[tickets] root_key_file`` in the central config.

    Example: coalgate central tickets issuer-key E610821001 --config /etc/coalgate/central.toml
    """
    try:
        ts = TicketSettings.from_config(load_settings(config), source=config)
        with db.connect(_url(config)) as conn:
            row = issuers.create_issuer_key(conn, enterprise, ts.root_key, now=ts.now(),
                                            max_validity_days=ts.max_validity_days,
                                            store=ts.issuer_keys)
    except (SettingsError, CentralTicketError, LedgerError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{row.kid} {row.verifier_key}")


@app.command("trust-list")
def trust_list(config: ConfigOpt = None) -> None:
    """Print the current published trust list (signed note), e.g. to provision a new gate.

    Example: coalgate central tickets trust-list > trust.note
    """
    with db.connect(_url(config)) as conn:
        current = issuers.current_trust_list(conn)
    if current is None:
        raise _fail("no trust list published yet; create an issuer key first")
    typer.echo(current[1], nl=False)
