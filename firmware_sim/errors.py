"""One error tree for the simulator: the library raises these, the CLI chooses the words."""

from __future__ import annotations

__all__ = ["SimError", "ScenarioError", "FrameError", "TransportError"]


class SimError(Exception):
    """Base of every error raised by firmware_sim."""


class ScenarioError(SimError):
    """A scenario file is unreadable or invalid; names the file, line and field."""

    def __init__(self, path: str, line: int | None, field: str, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        what = f"{field}: {message}" if field else message
        super().__init__(f"{where}: {what}")


class FrameError(SimError):
    """A value cannot be represented in a protocol frame (e.g. more than six digits)."""


class TransportError(SimError):
    """A pty, symlink or socket could not be set up."""
