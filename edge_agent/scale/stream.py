"""Streaming wrapper: bytes in as they arrive, readings out, every drop counted."""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.scale.frames import BadFrame, Decoder, Reading

# A buffer this long with no progress is noise (wrong baud rate); drop it rather than grow.
MAX_BUFFER = 4096


@dataclass
class StreamStats:
    frames: int = 0
    bad_frames: int = 0
    dropped_bytes: int = 0
    last_bad: str | None = None


class ScaleStream:
    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.stats = StreamStats()
        self._buf = b""

    def feed(self, data: bytes) -> list[Reading]:
        """Add bytes; return every complete, checked reading they finish."""
        self._buf += data
        out: list[Reading] = []
        while self._buf:
            used, result = self.decoder.decode(self._buf)
            if used == 0:
                break
            used = min(used, len(self._buf))
            if isinstance(result, Reading):
                self.stats.frames += 1
                out.append(result)
            elif isinstance(result, BadFrame):
                self.stats.bad_frames += 1
                self.stats.last_bad = result.reason
            else:
                self.stats.dropped_bytes += used
            self._buf = self._buf[used:]
        if len(self._buf) > MAX_BUFFER:
            self.stats.dropped_bytes += len(self._buf)
            self._buf = b""
        return out
