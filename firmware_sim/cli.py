"""``coalgate sim``: run the simulated weighbridge from a scenario file."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

from firmware_sim.camera.cli import frames
from firmware_sim.errors import ScenarioError, SimError
from firmware_sim.runner import GATE_ENDPOINTS, Simulator, StartRule
from firmware_sim.scenario import load_scenario

# Exit codes are raised as SystemExit: the root ``coalgate`` group is plain click, which does
# not recognise typer's own Exit exception.
app = typer.Typer(
    help="Simulated weighbridge, gate IO, camera and trucks.",
    no_args_is_help=True,
    add_completion=False,
)


async def _run(sim: Simulator) -> None:
    sim.install_signal_handlers()
    try:
        await sim.start()
        await sim.run()
    finally:
        await sim.stop()


@app.command()
def run(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Scenario TOML file.")],
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second.", min=0.01)
    ] = 1.0,
    endpoints_out: Annotated[
        Path | None, typer.Option("--endpoints-out", help="Write the endpoints JSON here.")
    ] = None,
    truth_out: Annotated[
        Path | None,
        typer.Option("--truth-out", help="Ground-truth JSON lines here (default: stdout)."),
    ] = None,
    dev_dir: Annotated[
        Path | None,
        typer.Option(
            "--dev-dir", help="Directory for device links (default /tmp/coalgate-sim-PID)."
        ),
    ] = None,
    frame_hz: Annotated[
        float,
        typer.Option("--frame-hz", help="Continuous frames per real second.", min=0.5, max=100),
    ] = 10.0,
    camera: Annotated[bool, typer.Option(help="Start the simulated camera if available.")] = True,
    anpr_push: Annotated[
        str | None,
        typer.Option("--anpr-push", help="POST each plate the camera sees to this URL (ANPR)."),
    ] = None,
    repeat: Annotated[
        bool,
        typer.Option("--repeat", help="Continuous traffic: when the scenario's trucks have all "
                     "left, send them again (until Ctrl-C; ignored with end_after_s)."),
    ] = False,
    linger: Annotated[
        bool,
        typer.Option("--linger", help="After the scenario ends, keep every endpoint serving "
                     "(an empty platform) until Ctrl-C, so the gate under test stops first."),
    ] = False,
    wait_for: Annotated[
        str | None,
        typer.Option("--wait-for", help="Start the scenario once the gate has shown itself on "
                     "every one of these endpoints (comma-separated, e.g. "
                     "'xk3190_pty,gate_io_tcp'; names: " + ", ".join(GATE_ENDPOINTS) + "). "
                     "Default: on the first contact on any endpoint."),
    ] = None,
    start_delay: Annotated[
        float | None,
        typer.Option("--start-delay", min=0.0, help="Start the scenario this many real seconds "
                     "after the endpoints are up, without waiting for a gate (0: at once)."),
    ] = None,
) -> None:
    """Start the simulated site and run a scenario until it ends or Ctrl-C.

    Writes every endpoint (serial devices, TCP ports, Modbus unit ids and register maps, camera
    URLs) to --endpoints-out and one JSON line of ground truth per truck pass.

    The scenario clock starts when the gate is connected (its first Modbus request, serial read
    or write, TCP connection or camera fetch; see --wait-for), or after --start-delay; the
    truth log says which ("waiting", then "start" events).

    Example: coalgate sim run --scenario config/scenarios/honest-two-pass.toml --speed 10
    --endpoints-out /tmp/sim.json
    """
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    try:
        names = [n.strip() for n in (wait_for or "").split(",") if n.strip()]
        start = StartRule(delay_s=start_delay, wait_for=tuple(names))
    except ValueError as exc:
        typer.echo(f"error: --wait-for/--start-delay: {exc}", err=True)
        raise SystemExit(2) from exc
    sink: TextIO = sys.stdout
    opened: TextIO | None = None
    if truth_out is not None:
        opened = sink = truth_out.open("a", encoding="utf-8")
    sim = Simulator(
        loaded,
        speed=speed,
        dev_dir=dev_dir,
        frame_hz=frame_hz,
        truth=sink,
        truth_path=str(truth_out) if truth_out else None,
        endpoints_out=endpoints_out,
        camera=camera,
        anpr_push_url=anpr_push,
        repeat=repeat,
        linger=linger,
        start=start,
    )
    try:
        asyncio.run(_run(sim))
    except SimError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from exc
    finally:
        if opened is not None:
            opened.close()


@app.command()
def check(
    scenario: Annotated[list[Path], typer.Argument(help="Scenario TOML files.")],
) -> None:
    """Validate scenario files without running them.

    Example: coalgate sim check config/scenarios/*.toml
    """
    failed = False
    for path in scenario:
        try:
            loaded = load_scenario(path)
        except ScenarioError as exc:
            typer.echo(f"error: {exc}", err=True)
            failed = True
            continue
        typer.echo(f"{path}: ok ({len(loaded.truck)} trucks)")
    if failed:
        raise SystemExit(2)


app.command("frames")(frames)
