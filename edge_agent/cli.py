"""``coalgate edge``: check a site config, run the gate agent, manage console accounts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from edge_agent.config import (
    ConfigError,
    SiteConfig,
    console_warnings,
    file_problems,
    load_config,
)

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
    cfg = _load_or_exit(file)
    for warning in file_problems(cfg) + console_warnings(cfg):
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

    cfg = _load_or_exit(config)
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


user_app = typer.Typer(
    help="Console accounts (operator / supervisor) of a gate, in the file console.accounts.",
    no_args_is_help=True,
)
app.add_typer(user_app, name="user")

UserConfig = Annotated[Path, typer.Option("--config", "-c", help="Site config (TOML).")]
NameArg = Annotated[str, typer.Argument(help="Account name, e.g. zhangsan or 张三.",
                                        show_default=False)]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from the first line of stdin (for scripts).")]


def _accounts(config: Path) -> Any:
    from edge_agent.accounts import AccountStore

    cfg = _load_or_exit(config)
    return AccountStore(cfg.console.accounts)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    pw: str = typer.prompt("Password / 密码", hide_input=True,
                           confirmation_prompt="Repeat / 再次输入")
    return pw


@user_app.command("add")
def user_add(
    name: NameArg,
    config: UserConfig,
    role: Annotated[str, typer.Option(help="operator (司磅员) or supervisor (主管).")] = "operator",
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a console account; the password is asked for twice (or read from stdin).

    Example: coalgate edge user add zhangsan --role operator -c /etc/coalgate/site.toml
    """
    from edge_agent.accounts import AccountError, check_name, check_role

    store = _accounts(config)
    try:
        check_name(name)
        check_role(role)
        acct = store.add(name, role, _password(password_stdin))
    except AccountError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"added {acct.name} ({acct.role}) to {store.path}")


@user_app.command("passwd")
def user_passwd(name: NameArg, config: UserConfig, password_stdin: PasswordStdin = False) -> None:
    """Set a new password for an account (and enable it again if it was disabled).

    Example: coalgate edge user passwd zhangsan -c /etc/coalgate/site.toml
    """
    from edge_agent.accounts import AccountError

    store = _accounts(config)
    try:
        if name not in {a.name for a in store.list()}:
            raise AccountError(f"no account {name!r}; see `coalgate edge user list`")
        store.set_password(name, _password(password_stdin))
    except AccountError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"password of {name} changed; sessions already open stay until they expire "
               "or the gate restarts")


@user_app.command("disable")
def user_disable(name: NameArg, config: UserConfig) -> None:
    """Disable an account (it can no longer log in; `passwd` enables it again).

    Example: coalgate edge user disable zhangsan -c /etc/coalgate/site.toml
    """
    from edge_agent.accounts import AccountError

    store = _accounts(config)
    try:
        store.disable(name)
    except AccountError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name} disabled")


@user_app.command("list")
def user_list(config: UserConfig) -> None:
    """List the accounts: name, role, enabled, last change (never the password hashes).

    Example: coalgate edge user list -c /etc/coalgate/site.toml
    """
    store = _accounts(config)
    accounts = store.list()
    if not accounts:
        typer.echo(f"no accounts in {store.path}")
        return
    for a in accounts:
        state = "disabled" if a.disabled else "enabled"
        typer.echo(f"{a.name}\t{a.role}\t{state}\tchanged {a.changed}")


def _load_or_exit(file: Path) -> SiteConfig:
    """The site config, or every problem with its key path on stderr and exit status 1."""
    try:
        return load_config(file)
    except ConfigError as exc:
        typer.echo(f"{exc.path}: {len(exc.problems)} problem(s):", err=True)
        for problem in exc.problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(1) from None
