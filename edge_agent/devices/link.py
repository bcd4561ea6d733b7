"""What every device adapter keeps about its link: online or not, and its reconnect back-off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from edge_agent.devices.backoff import Backoff
from edge_agent.gate.events import DeviceStatus, Event

Emit = Callable[[Event], None]


class DeviceLink:
    """Base of the device adapters: the controller hears of a link only when it changes."""

    device: ClassVar[str]  # "scale", "io" or "scanner", as DeviceStatus names it

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.backoff = Backoff()
        self.online = False

    def _status(self, online: bool, detail: dict[str, Any]) -> None:
        if online != self.online:
            self.online = online
            self.emit(DeviceStatus(self.device, online, detail))
