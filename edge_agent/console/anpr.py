"""ANPR camera pushes: the console's own simple JSON and the Vzenith (臻识) ``AlarmInfoPlate``
push, adapted to one value. Pure: JSON in, :class:`AnprPush` out or :class:`AnprFormatError`.

Simple shape: ``{"plate": "陕K12345", "confidence": 0.97, "camera": "front", "axles": 6,
"seen_ms": 1795000000000}`` (only ``plate`` is required; ``confidence`` 0–1).

Vzenith shape (``firmware_sim/camera/server.py`` sends the same): ``{"AlarmInfoPlate":
{"channel": 0, "serialno": "...", "result": {"PlateResult": {"license": "陕K12345",
"confidence": 99, "timeStamp": {"Timeval": {"sec": 1795000000, "usec": 0}}, ...}}}}``
(``confidence`` 0–100; the capture time lets a late push be given to the right truck).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge_agent.plates.grammar import normalise_plate

__all__ = ["AnprFormatError", "AnprPush", "parse_anpr"]

_SHAPES = ('the console\'s {"plate": "陕K12345", "confidence": 0.97} or a Vzenith '
           '{"AlarmInfoPlate": {"result": {"PlateResult": {"license": ...}}}} push')


class AnprFormatError(ValueError):
    """The push is not an ANPR result this console understands (the message says why)."""


@dataclass(frozen=True)
class AnprPush:
    plate: str  # grammar-valid, normalised
    conf_pm: int
    camera: str = "front"
    axles: int | None = None
    seen_ms: int | None = None  # when the camera took the picture


def parse_anpr(payload: Any) -> AnprPush:
    """One ANPR result from a decoded JSON body, in either supported shape."""
    if not isinstance(payload, dict):
        raise AnprFormatError(f"expected a JSON object: {_SHAPES}")
    if "AlarmInfoPlate" in payload:
        return _vzenith(payload["AlarmInfoPlate"])
    if "plate" in payload:
        return _simple(payload)
    keys = ", ".join(sorted(map(str, payload))) or "none"
    raise AnprFormatError(f"unknown ANPR push (keys: {keys}); send {_SHAPES}")


def _plate(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise AnprFormatError(f"{where} must be a string, got {type(text).__name__}")
    plate = normalise_plate(text)
    if plate is None:
        raise AnprFormatError(f"{where} {text!r} is not a valid Chinese plate (e.g. 陕K12345); "
                              f"a camera that saw no plate should not push")
    return plate


def _number(v: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise AnprFormatError(f"{where} must be a number from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


def _simple(p: dict[str, Any]) -> AnprPush:
    unknown = set(p) - {"plate", "confidence", "camera", "axles", "seen_ms"}
    if unknown:
        raise AnprFormatError(f"unknown field(s) {', '.join(sorted(unknown))} in ANPR push; "
                              f"allowed: plate, confidence, camera, axles, seen_ms")
    conf = _number(p.get("confidence", 1.0), "confidence", 0, 1)
    camera = p.get("camera", "front")
    if not isinstance(camera, str) or not 1 <= len(camera) <= 32:
        raise AnprFormatError(f"camera must be a short name such as 'front', got {camera!r}")
    axles = p.get("axles")
    if axles is not None:
        axles = int(_number(axles, "axles", 2, 12))
    seen = p.get("seen_ms")
    if seen is not None:
        seen = int(_number(seen, "seen_ms", 0, 2**53))
    return AnprPush(_plate(p["plate"], "plate"), int(round(conf * 1000)), camera, axles, seen)


def _vzenith(info: Any) -> AnprPush:
    where = "AlarmInfoPlate.result.PlateResult"
    try:
        res = info["result"]["PlateResult"]
    except (KeyError, TypeError):
        raise AnprFormatError(f"Vzenith push without {where}; is the camera set to push "
                              f"plate results (not heartbeats) to this URL?") from None
    if not isinstance(res, dict) or "license" not in res:
        raise AnprFormatError(f"{where}.license is missing")
    conf = _number(res.get("confidence", 100), f"{where}.confidence", 0, 100)
    seen: int | None = None
    tv = (res.get("timeStamp") or {}).get("Timeval") if isinstance(res.get("timeStamp"),
                                                                    dict) else None
    if isinstance(tv, dict) and "sec" in tv:
        sec = _number(tv["sec"], f"{where}.timeStamp.Timeval.sec", 0, 2**40)
        usec = _number(tv.get("usec", 0), f"{where}.timeStamp.Timeval.usec", 0, 999_999)
        seen = int(sec * 1000 + usec // 1000)
    return AnprPush(_plate(res["license"], f"{where}.license"), int(round(conf * 10)),
                    "front", None, seen)
