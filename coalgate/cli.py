"""The ``coalgate`` command: one sub-command group per package.

Groups are imported only when invoked, so ``coalgate ledger verify`` does not pay for
importing FastAPI or OpenCV. Each package exposes a Typer app as ``<package>.cli:app``.
"""

from __future__ import annotations

import importlib

import click
import typer.main

from coalgate import __version__

# name -> (module holding a Typer ``app``, one-line help). Add a group when it does something real.
GROUPS: dict[str, tuple[str, str]] = {
    "ledger": ("ledger.cli", "Signed, hash-chained ledger: keys, append, verify, prove, export"),
    "plates": ("edge_agent.plates.cli", "Read Chinese licence plates from camera frames"),
    "ticket": ("ledger.ticket_cli", "Electronic coal tickets: issue, verify, render QR"),
    "sim": ("firmware_sim.cli", "Simulated weighbridge, gate IO, camera and trucks"),
    "edge": ("edge_agent.cli", "The gate agent: check a site config, run the gate"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(GROUPS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in GROUPS:
            return None
        module = importlib.import_module(GROUPS[cmd_name][0])
        command = typer.main.get_command(module.app)
        command.help = command.help or GROUPS[cmd_name][1]
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, GROUPS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coalgate")
def main() -> None:
    """coalgate — electronic coal tickets and signed weighbridge records (电子煤管票)."""
