"""``coalgate central``: run the API and dashboard, run ingest workers, manage tokens and sites.

Each command loads the one central config (``--config``), opens the database it names (or the
embedded one), applies pending migrations, calls one library function and turns its typed
errors into a message and an exit code (1: could not run, 2: bad input).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer

from central.auth import ROLES, AuthError, create_token, revoke_token
from central.db import DatabaseError, connect, migrate, resolve_url
from central.ingest.cli import ingest
from central.settings import Settings, SettingsError, load_settings
from central.tickets.cli import app as tickets_app
from central.tickets.settings import TicketSettings
from ledger.errors import KeyFormatError
from ledger.keys import read_verifier

__all__ = ["app"]

app = typer.Typer(help="The central service: ingest, API, bureau dashboard, tokens",
                  no_args_is_help=True, add_completion=False)
token_app = typer.Typer(help="API bearer tokens", no_args_is_help=True)
site_app = typer.Typer(help="Enrolled sites (gates) and their keys", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(site_app, name="site")
app.command("ingest")(ingest)
app.add_typer(tickets_app, name="tickets")

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="central TOML config (default: built-in defaults, "
                 "embedded PostgreSQL under var/central; COALGATE_CENTRAL__* overrides)"),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None


@contextmanager
def _database(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = connect(resolve_url(settings.ingest.database))
        migrate(conn)
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    with conn:
        yield conn


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="listen address (default: [api] host)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: [api] port)")] = None,
) -> None:
    """Serve the API (/api/v1, /openapi.json) and the bureau dashboard (/dashboard/).

    Stateless: run as many as needed behind a load balancer, all on one database.

    Example:
        coalgate central serve --config /etc/coalgate/central.toml --port 8080
    """
    import uvicorn

    from central.api import create_app
    from central.tickets.api import router as tickets_router
    from central.tickets.pages import pages_router

    settings = _settings(config)
    try:
        url = resolve_url(settings.ingest.database)
    except DatabaseError as exc:
        raise _fail(str(exc)) from None
    try:
        tickets = TicketSettings.from_config(settings, source=config)
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    bind_host = host or settings.api.host
    bind_port = settings.api.port if port is None else port
    typer.echo(f"coalgate central: dashboard http://{bind_host}:{bind_port}/dashboard/ , "
               f"API http://{bind_host}:{bind_port}/api/v1 , OpenAPI /openapi.json")
    api = create_app(settings, url=url, routers=[tickets_router])
    api.state.tickets = tickets
    # Driver pages and slip verification live at the site root (/t/…, /v/…), not under /api.
    api.include_router(pages_router)
    uvicorn.run(api, host=bind_host, port=bind_port, log_level="info")


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help=f"one of: {', '.join(ROLES)}")],
    enterprise: Annotated[str | None, typer.Option(
        help="for --role enterprise: the enterprise whose sites the token sees")] = None,
    label: Annotated[str, typer.Option(help="who holds it; shown as who acknowledged an alarm")
                     ] = "",
    config: ConfigOpt = None,
) -> None:
    """Create an API token and print it. Only its hash is stored: keep the printed token.

    Example:
        coalgate central token create --role bureau --label "能源局值班室"
        coalgate central token create --role enterprise --enterprise "榆林某某煤业有限公司"
    """
    with _database(_settings(config)) as conn:
        try:
            tok, principal = create_token(conn, role, enterprise=enterprise, label=label)
        except AuthError as exc:
            raise _fail(str(exc), 2) from None
        conn.commit()
    typer.echo(tok)
    typer.echo(f"token id {principal.token_id}, role {principal.role}"
               + (f", enterprise {principal.enterprise}" if principal.enterprise else ""),
               err=True)


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="the id printed by token create")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a token: requests with it get 401 from now on.

    Example:
        coalgate central token revoke 7
    """
    with _database(_settings(config)) as conn:
        if not revoke_token(conn, token_id):
            raise _fail(f"no active token with id {token_id}", 2)
        conn.commit()
    typer.echo(f"revoked token {token_id}")


@site_app.command("enroll")
def site_enroll(
    site: Annotated[str, typer.Argument(help="site id, as the gate's ledger names it")],
    key: Annotated[str, typer.Option("--key", help="the gate's verifier key, or a file with it")],
    enterprise: Annotated[str, typer.Option(help="owning enterprise")],
    name: Annotated[str, typer.Option(help="display name, e.g. 3号矿 东磅房")] = "",
    lat: Annotated[float | None, typer.Option(help="latitude, for the map")] = None,
    lon: Annotated[float | None, typer.Option(help="longitude, for the map")] = None,
    loading_site: Annotated[str | None, typer.Option(
        help="the loading site (mine) whose e-tickets this gate accepts; default: the site id. "
             "Enrol every weighbridge of one mine with the same value")] = None,
    config: ConfigOpt = None,
) -> None:
    """Enrol a gate so the ingest accepts its signed entries.

    Example:
        coalgate central site enroll yl-mine-03 --key var/edge/site.pub \\
            --enterprise "榆林某某煤业有限公司" --name "3号矿 东磅房"
        coalgate central site enroll yl-mine-03-west --key west.pub \\
            --enterprise "榆林某某煤业有限公司" --loading-site yl-mine-03
    """
    from central.api.schemas import SiteIn

    try:
        verifier = read_verifier(key)
    except KeyFormatError as exc:
        raise _fail(f"--key: {exc}", 2) from None
    if verifier.name != site:
        typer.echo(f"note: the key is named {verifier.name!r}, the site {site!r}", err=True)
    try:
        body = SiteIn(id=site, enterprise=enterprise, name=name or site, lat=lat, lon=lon,
                      verifier_key=verifier.to_text(), loading_site=loading_site)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    from central.sites import SiteExistsError, enrol_site
    from central.tickets.errors import CentralTicketError

    with _database(_settings(config)) as conn:
        try:
            loading = enrol_site(conn, body)
        except SiteExistsError as exc:
            raise _fail(str(exc), 2) from None
        except CentralTicketError as exc:
            raise _fail(f"--loading-site: {exc}", 2) from None
        conn.commit()
    typer.echo(f"enrolled {site} ({enterprise}) with key {verifier.name}+{verifier.key_id.hex()}"
               + (f", loading site {loading}" if loading != site else ""))


@app.command("broker-accounts")
def broker_accounts(
    out: Annotated[Path, typer.Option(
        help="the Mosquitto dynamic-security file to write (mode 0600), "
             "e.g. /var/lib/mosquitto/dynamic-security.json")],
    central_password_file: Annotated[Path, typer.Option(
        help="file (0600) holding the central's broker password; name the same file in "
             "central.toml [mqtt] password_file")],
    site: Annotated[list[str] | None, typer.Option(
        help="SITE=PASSWORD_FILE for each gate; repeatable")] = None,
    viewer_password_file: Annotated[Path | None, typer.Option(
        help="password file for the read-only bureau-view account (live, status)")] = None,
    admin_password_file: Annotated[Path | None, typer.Option(
        help="password file for dynsec-admin, which mosquitto_ctrl uses to add sites live")
    ] = None,
) -> None:
    """Write the broker's accounts: one role and one bound client id per site, the central.

    Example:
        coalgate central broker-accounts --out /var/lib/mosquitto/dynamic-security.json
        --central-password-file /etc/coalgate/central.mqtt-password --site mine-a=mine-a.pw
    """
    from central.broker_accounts import dynsec_document, write_dynsec
    from edge_agent.sync.mqtt import MqttConfigError, read_password_file

    try:
        sites: dict[str, str] = {}
        for spec in site or []:
            name, sep, file = spec.partition("=")
            if not sep:
                raise _fail(f"--site {spec!r}: expected SITE=PASSWORD_FILE", 2)
            sites[name] = read_password_file(Path(file), where=f"--site {name}")
        doc = dynsec_document(
            read_password_file(central_password_file, where="--central-password-file"), sites,
            viewer_password=read_password_file(viewer_password_file, where="--viewer-password-file")
            if viewer_password_file else None,
            admin_password=read_password_file(admin_password_file, where="--admin-password-file")
            if admin_password_file else None,
        )
    except (MqttConfigError, ValueError) as exc:
        raise _fail(str(exc), 2) from None
    write_dynsec(out, doc)
    typer.echo(f"wrote {out} (mode 0600): central + {len(sites)} site(s); "
               f"chown it to the mosquitto user and restart or reload the broker")
