"""MT-SICS level 0/1 commands on the simulated scale: S, SI, SIR, Z, T, TAC, @.

Pure: ``respond`` takes a command line and the scale model and returns what to do. ``S`` only
answers with a stable weight, so an unstable scale yields ``SicsAnswer(wait_for_stable=True)``
and the transport asks again (``timed_out=True`` after its deadline, giving ``S I``).
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.physics import CommandResult, Reading, ScaleModel, ScaleSpec

__all__ = ["SicsAnswer", "respond", "weight_line", "SERIAL_NUMBER"]

SERIAL_NUMBER = "SIM00001"
_FIELD = 10
_RESULT_CODES = {
    CommandResult.MOTION: "I",
    CommandResult.ABOVE_RANGE: "+",
    CommandResult.BELOW_RANGE: "-",
}


@dataclass(frozen=True)
class SicsAnswer:
    """``line`` to send (without CR LF); or wait for stability; or start repeating ``SI``."""

    line: str | None = None
    wait_for_stable: bool = False
    repeat_immediate: bool = False


def _display(kg: int, spec: ScaleSpec) -> str:
    count = spec.to_display(kg)
    if spec.decimals == 0:
        return str(count)
    sign = "-" if count < 0 else ""
    digits = f"{abs(count):0{spec.decimals + 1}d}"
    return f"{sign}{digits[: -spec.decimals]}.{digits[-spec.decimals :]}"


def weight_line(prefix: str, status: str, kg: int, spec: ScaleSpec) -> str:
    """``S S      1234 kg``: command, status, weight right-aligned in 10, unit."""
    return f"{prefix} {status} {_display(kg, spec):>{_FIELD}} {spec.unit}"


def _range_status(reading: Reading) -> str | None:
    if reading.overload:
        return "+"
    if reading.underload:
        return "-"
    return None


def respond(command: str, scale: ScaleModel, *, timed_out: bool = False) -> SicsAnswer:
    """Answer one command line (CR LF already stripped) from the current reading."""
    spec = scale.spec
    reading = scale.last
    cmd = command.strip()
    if cmd in ("S", "SI", "SIR"):
        out_of_range = _range_status(reading)
        if out_of_range:
            return SicsAnswer(line=f"S {out_of_range}")
        if cmd == "SIR":
            return SicsAnswer(
                line=weight_line("S", "S" if reading.stable else "D", reading.net_kg, spec),
                repeat_immediate=True,
            )
        if cmd == "SI":
            return SicsAnswer(
                line=weight_line("S", "S" if reading.stable else "D", reading.net_kg, spec)
            )
        if not reading.stable:
            return SicsAnswer(line="S I") if timed_out else SicsAnswer(wait_for_stable=True)
        return SicsAnswer(line=weight_line("S", "S", reading.net_kg, spec))
    if cmd == "Z":
        result = scale.zero()
        return SicsAnswer(
            line="Z A" if result is CommandResult.DONE else f"Z {_RESULT_CODES[result]}"
        )
    if cmd == "T":
        result, tare = scale.tare()
        if result is CommandResult.DONE:
            return SicsAnswer(line=weight_line("T", "S", tare, spec))
        return SicsAnswer(line=f"T {_RESULT_CODES[result]}")
    if cmd == "TAC":
        scale.clear_tare()
        return SicsAnswer(line="TAC A")
    if cmd == "@":
        return SicsAnswer(line=f'I4 A "{SERIAL_NUMBER}"')
    return SicsAnswer(line="ES")
