"""Plates entering the central: one normalisation for every API field, query filter, page and CLI.

The gate normalises every plate it records (site config, console, ANPR push) with
``edge_agent.plates.grammar.normalise_plate``; the central uses the very same function, so a plate
typed at a sales office (``陕k·8a3b2``, full-width, spaces) is stored and compared exactly as the
gate will read it (``陕K8A3B2``), and text that is not a plate (``ABC123``) is refused with a
message naming the field and giving examples, never stored.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from edge_agent.plates.grammar import normalise_plate

__all__ = ["PLATE_EXAMPLES", "Plate", "PlateError", "plate_error_message", "check_plate"]

PLATE_EXAMPLES = "陕K12345, 晋B1234挂, 陕KD12345"


class PlateError(ValueError):
    """Text given as a plate is not a valid Chinese plate (the message names the field)."""


def plate_error_message(value: str, field: str = "plate") -> str:
    """Chinese first (the sales office reads it), then English for integrators."""
    return (f"车牌号无效（{field}）：{value!r} 不是有效的车牌，应为省份简称+字母+5位字母数字，"
            f"例如 {PLATE_EXAMPLES}；不能用 I、O / {field} {value!r} is not a valid Chinese "
            f"plate: a province character, a letter and five letters or digits (no I or O), "
            f"e.g. {PLATE_EXAMPLES}")


def check_plate(value: str, field: str = "plate") -> str:
    """``value`` as the normalised plate; raise PlateError naming ``field`` if it is none."""
    plate = normalise_plate(value) if isinstance(value, str) else None
    if plate is None:
        raise PlateError(plate_error_message(str(value), field))
    return plate


def _validate(value: str) -> str:
    plate = normalise_plate(value)
    if plate is None:
        # A custom error type keeps pydantic's "Value error, " prefix off the message the
        # issuance page shows as is; FastAPI adds the location (body/query and field name).
        raise PydanticCustomError("plate", plate_error_message(value))
    return plate


#: A plate field or query parameter: normalised on input, 422 with the bilingual message if
#: invalid. ``Annotated[Plate, Query()]`` and pydantic model fields both use it.
Plate = Annotated[str, AfterValidator(_validate)]
