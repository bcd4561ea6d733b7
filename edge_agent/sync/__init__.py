"""Edge ↔ central sync: the outbox publisher (outbox.py), the MQTT protocol (protocol.py).

``Outbox`` is imported lazily so the central can import the protocol without the outbox.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Outbox"]


def __getattr__(name: str) -> Any:
    if name == "Outbox":
        from edge_agent.sync.outbox import Outbox

        return Outbox
    raise AttributeError(name)
