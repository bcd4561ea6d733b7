"""The ``coalgate`` command: one sub-command group per package.

Groups are imported only when invoked, so ``coalgate ledger verify`` does not pay for
importing FastAPI or OpenCV. Each package exposes a Typer app as ``<package>.cli:app``.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from coalgate import __version__

# name -> (module holding a Typer ``app``, one-line help). Add a group when it does something real.
GROUPS: dict[str, tuple[str, str]] = {
    "central": ("central.cli", "The central service: ingest, API, bureau dashboard, tokens"),
    "ledger": ("ledger.cli", "Signed, hash-chained ledger: keys, append, verify, prove, export"),
    "plates": ("edge_agent.plates.cli", "Read Chinese licence plates from camera frames"),
    "ticket": ("ledger.ticket_cli", "Electronic coal tickets: issue, verify, render QR"),
    "sim": ("firmware_sim.cli", "Simulated weighbridge, gate IO, camera and trucks"),
    "edge": ("edge_agent.cli", "The gate agent: check a site config, run the gate"),
    "demo": ("coalgate.demo", "Run the whole system on one machine"),
}


class LazyGroup(TyperGroup):
    """Imports a group's module only when that group is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(GROUPS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in GROUPS:
            return None
        module_name, short_help = GROUPS[cmd_name]
        command = typer.main.get_command(importlib.import_module(module_name).app)
        command.help = command.help or short_help
        command.name = cmd_name
        command.short_help = short_help
        return command


app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="coalgate — electronic coal tickets and signed weighbridge records (电子煤管票).",
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"coalgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """coalgate — electronic coal tickets and signed weighbridge records (电子煤管票)."""


def main() -> None:
    app()
