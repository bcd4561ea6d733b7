"""The live alarm stream: PostgreSQL LISTEN/NOTIFY fanned out to SSE clients.

The ``alarms_notify`` trigger (migration 002) notifies ``coalgate_alarms`` when an alarm is
committed, from whichever process raised it (an ingest worker, an API instance sweeping for
offline sites). One listener per API process wakes every subscriber; each subscriber then reads
the alarms after the last id it sent, filtered to what its token may see. Reading by id rather
than trusting the notification payload means a dropped notification or a reconnect loses
nothing: the next wake-up (or the periodic one) catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

__all__ = ["AlarmBroadcaster", "CHANNEL"]

log = logging.getLogger(__name__)
CHANNEL = "coalgate_alarms"


class AlarmBroadcaster:
    """Wakes subscribers when an alarm is committed anywhere."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._subscribers: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="alarm-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._subscribers.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._subscribers.discard(event)

    def _wake_all(self) -> None:
        for event in self._subscribers:
            event.set()

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 0.5
                    # Alarms committed while we were not listening: let subscribers catch up.
                    self._wake_all()
                    async for _ in conn.notifies():
                        self._wake_all()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("alarm listener lost the database (%s); retrying in %.1fs",
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
