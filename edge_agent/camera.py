"""Frames from the gate's IP camera and plate reading off the event loop.

``grab_frames`` takes JPEG frames from the camera's snapshot URL (one GET per frame) or its
MJPEG stream (``multipart/x-mixed-replace``, split by :class:`MjpegSplitter`, pure).
:class:`PlateWorker` reads them with :class:`edge_agent.plates.PlateReader` on one worker
thread (one core; the model is loaded once) and votes (:func:`edge_agent.plates.vote`).
``keep_snapshot`` stores the JPEG under the data directory named by its SHA-256, the value the
weighing entry records as ``snapshot_sha256``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["CameraError", "Frame", "MjpegSplitter", "PlateWorker", "Voted", "grab_frames",
           "keep_snapshot", "snapshot_path"]

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MAX_PART = 8 * 1024 * 1024  # a 4K JPEG is < 3 MB; anything larger is a broken stream


class CameraError(Exception):
    """The camera gave no usable frame (the message names the URL and the problem)."""


@dataclass(frozen=True)
class Frame:
    jpeg: bytes
    taken_ms: int  # wall clock when the frame arrived


class MjpegSplitter:
    """Splits an MJPEG byte stream into JPEG parts. Feed bytes as they arrive.

    Uses each part's Content-Length when the camera sends one, else the JPEG end marker
    followed by the next boundary; bytes before the first boundary are skipped.
    """

    def __init__(self, boundary: str) -> None:
        self._delim = b"--" + boundary.removeprefix("--").encode("latin-1")
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while True:
            start = self._buf.find(self._delim)
            if start < 0:
                self._buf = self._buf[-len(self._delim):]
                return out
            head_end = self._buf.find(b"\r\n\r\n", start)
            if head_end < 0:
                self._buf = self._buf[start:]
                return out
            headers = self._buf[start + len(self._delim):head_end].decode("latin-1")
            body_at = head_end + 4
            m = re.search(r"(?im)^content-length:\s*(\d+)\s*$", headers)
            if m:
                n = int(m.group(1))
                if n > _MAX_PART:
                    raise CameraError(f"MJPEG part of {n} bytes is too large; not a camera stream")
                if len(self._buf) < body_at + n:
                    self._buf = self._buf[start:]
                    return out
                part = self._buf[body_at:body_at + n]
                self._buf = self._buf[body_at + n:]
            else:
                nxt = self._buf.find(b"\r\n" + self._delim, body_at)
                if nxt < 0:
                    if len(self._buf) - body_at > _MAX_PART:
                        raise CameraError("MJPEG part has no end within 8 MB; not a camera stream")
                    self._buf = self._buf[start:]
                    return out
                part = self._buf[body_at:nxt]
                self._buf = self._buf[nxt + 2:]
            if part.startswith(b"\xff\xd8"):
                out.append(part)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def grab_frames(url: str, count: int, interval_s: float, *,
                      timeout_s: float = 3.0) -> list[Frame]:
    """``count`` frames about ``interval_s`` apart from a snapshot URL or an MJPEG stream."""
    frames: list[Frame] = []
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            async with client.stream("GET", url) as r:
                r.raise_for_status()
                ctype = r.headers.get("content-type", "")
                if ctype.startswith("multipart/"):
                    m = re.search(r'boundary="?([^";]+)"?', ctype)
                    if not m:
                        raise CameraError(f"camera {url}: multipart stream without a boundary")
                    splitter = MjpegSplitter(m.group(1))
                    last = 0.0
                    async for chunk in r.aiter_bytes():
                        for jpg in splitter.feed(chunk):
                            if time.monotonic() - last >= interval_s:
                                last = time.monotonic()
                                frames.append(Frame(jpg, _now_ms()))
                        if len(frames) >= count:
                            return frames
                    raise CameraError(f"camera {url}: stream ended after {len(frames)} frames")
                frames.append(Frame(await r.aread(), _now_ms()))
            while len(frames) < count:
                await asyncio.sleep(interval_s)
                r2 = await client.get(url)
                r2.raise_for_status()
                frames.append(Frame(r2.content, _now_ms()))
    except httpx.HTTPError as exc:
        raise CameraError(f"camera {url}: {exc.__class__.__name__}: {exc}; check "
                          f"camera.snapshot_url / camera.mjpeg_url and the network") from exc
    return frames


def snapshot_path(directory: Path, sha256_hex: str) -> Path:
    """Where the snapshot with this hash is kept; ValueError for anything but 64 hex digits."""
    if not _SHA256_HEX.match(sha256_hex):
        raise ValueError(f"{sha256_hex!r} is not a SHA-256 in lower-case hex")
    return directory / f"{sha256_hex}.jpg"


def keep_snapshot(directory: Path, jpeg: bytes) -> str:
    """Store ``jpeg`` as ``<sha256>.jpg`` in ``directory`` (atomically); return the hash."""
    digest = hashlib.sha256(jpeg).hexdigest()
    path = snapshot_path(directory, digest)
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(jpeg)
        os.replace(tmp, path)
    return digest


@dataclass(frozen=True)
class Voted:
    plate: str
    conf_pm: int
    frame: Frame  # the frame that read the chosen plate most confidently
    frames_read: int


class PlateWorker:
    """Reads plates on one worker thread, never on the event loop."""

    def __init__(self, *, min_plate_width: int = 90,
                 roi: tuple[int, int, int, int] | None = None,
                 plate_width: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plates")
        self._reader: Any = None
        self._min_width = min_plate_width
        self._roi = roi
        self._plate_width = plate_width

    def _read_all(self, frames: list[Frame]) -> Voted | None:
        import cv2
        import numpy as np

        from edge_agent.plates import PlateReader, vote

        if self._reader is None:
            self._reader = PlateReader(threads=1, min_plate_width=self._min_width,
                                       roi=self._roi, plate_width=self._plate_width)
        per_frame = []
        for f in frames:
            img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
            per_frame.append([] if img is None else self._reader.read(img))
        # No threshold here: a low-confidence winner still goes to the gate as a candidate
        # for the operator; the gate policy decides what is credible.
        best = vote(per_frame, min_confidence=0.0)
        if best is None:
            return None
        i = max(range(len(frames)), key=lambda k: max(
            (r.confidence for r in per_frame[k] if r.text == best.text), default=-1.0))
        return Voted(best.text, int(round(best.confidence * 1000)), frames[i], len(frames))

    async def read(self, frames: list[Frame]) -> Voted | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._read_all, frames)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
