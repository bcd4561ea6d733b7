"""Reading Chinese licence plates from camera frames on the gate PC (issue 6).

``PlateReader().read(frame)`` returns ``PlateReading``s; ``vote`` combines several frames
of a standing truck; ``grammar.normalise_plate`` validates typed or read plate text.

The reader is imported on first use: the central and the CLI need only the grammar, and
should not load OpenCV and numpy for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge_agent.plates.reader import PlateReader
    from edge_agent.plates.reading import PlateReading, vote

__all__ = ["PlateReader", "PlateReading", "vote"]


def __getattr__(name: str) -> Any:
    if name == "PlateReader":
        from edge_agent.plates.reader import PlateReader

        return PlateReader
    if name in ("PlateReading", "vote"):
        from edge_agent.plates import reading

        return getattr(reading, name)
    raise AttributeError(f"module 'edge_agent.plates' has no attribute {name!r}")
