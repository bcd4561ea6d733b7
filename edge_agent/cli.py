"""``coalgate edge``: check a site config, run the gate agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edge_agent.config import ConfigError, file_problems, load_config

app = typer.Typer(
    help="The gate agent: check a site config, run the gate.",
    no_args_is_help=True,
    add_completion=False,
)

ConfigArg = Annotated[Path, typer.Argument(help="Site config (TOML).", show_default=False)]


@app.command("check-config")
def check_config(file: ConfigArg) -> None:
    """Validate a site config and explain every problem with its key path and the fix.

    Example: coalgate edge check-config config/site.example.toml
    """
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        typer.echo(f"{exc.path}: {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(1) from None
    for warning in file_problems(cfg):
        typer.echo(f"warning: {warning}", err=True)
    p = cfg.gate_policy()
    typer.echo(
        f"{file}: OK — site {cfg.site.id}, scale {cfg.scale.protocol} over {cfg.scale.transport}, "
        f"io {cfg.io.kind}, mode {p.mode}, ticket_required={str(p.ticket_required).lower()}, "
        f"{len(cfg.vehicles)} registered vehicle(s), console port {cfg.console.port}"
    )


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site config (TOML).")],
    console_port: Annotated[
        int | None, typer.Option(help="Override console.port (0 = any free port).")
    ] = None,
) -> None:
    """Run the gate: devices, controller, ledger and operator console, until SIGTERM.

    Logs one JSON object per line on stderr.

    Example: coalgate edge run --config /etc/coalgate/site.toml
    """
    from edge_agent.runtime import RuntimeError_, run_agent

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        typer.echo(f"{exc.path}: {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(1) from None
    problems = file_problems(cfg)
    if problems:
        for p in problems:
            typer.echo(f"error: {p}", err=True)
        raise typer.Exit(1)
    try:
        run_agent(cfg, console_port=console_port)
    except RuntimeError_ as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
