"""Byte pipes: ptys behind stable symlinks, and TCP servers like a serial-to-Ethernet box.

Both ends of every pty are put in raw mode at once (otherwise the line discipline echoes and
cooks bytes). We keep the slave end open ourselves so the master never sees EIO when a client
closes the device; writes to a pty nobody reads are dropped once its buffer is full, like a
serial line with nothing attached.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios
import tty
from collections.abc import Callable
from pathlib import Path

from firmware_sim.errors import TransportError

__all__ = ["PtyPort", "NullModem", "TcpFanout", "Receiver", "Contact"]

Receiver = Callable[[bytes, Callable[[bytes], None]], None]
"""Called with received bytes and a ``reply(data)`` function for the same connection."""

Contact = Callable[[], None]
"""Called when a client shows itself on an endpoint (connects, sends, or reads)."""

_READ_SIZE = 4096


def _make_link(link: Path, target: str) -> None:
    if link.is_symlink():
        link.unlink()  # a stale link from a crashed run; never a regular file
    elif link.exists():
        raise TransportError(f"{link} exists and is not a symlink; choose another --dev-dir")
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


class PtyPort:
    """One pty pair. Clients open ``link`` (a symlink to the slave); we use the master."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        try:
            tty.setraw(self.master)
            tty.setraw(self.slave)
            os.set_blocking(self.master, False)
            self.device = os.ttyname(self.slave)
            _make_link(link, self.device)
        except BaseException:
            os.close(self.master)
            os.close(self.slave)
            raise
        self._reader_added = False
        # Called once a client opens and configures the device, reads from it or writes to it
        # (then cleared: noticing a reader costs a few syscalls per write, worth it only until
        # one is seen).
        self.on_contact: Contact | None = None
        self._unread = 0
        self._attrs = termios.tcgetattr(self.slave)  # raw, at the pty's default speed

    def _queued_for_client(self) -> int:
        """Bytes written by us that no client has read yet (the slave's input queue)."""
        try:
            raw = fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])

    def _contact(self) -> None:
        callback, self.on_contact = self.on_contact, None
        if callback is not None:
            callback()

    def _configured_by_client(self) -> bool:
        """A client set the line up (pyserial sets the baud rate and flags when it opens)."""
        try:
            return bool(termios.tcgetattr(self.slave) != self._attrs)
        except termios.error:
            return False

    def check_contact(self) -> None:
        """Notice a client that only reads (a continuous-output indicator's). Mainly: it sets
        the line up when it opens it (pyserial, like any serial library, sets the baud rate),
        which changes the slave's termios. Also: the queue shrank (only a read, or a flush on
        open, takes bytes out) — that catches a slow raw reader, but one that never sets the
        line up and keeps the queue empty goes unseen (wait for another endpoint instead)."""
        if self.on_contact is None:
            return
        if self._configured_by_client() or self._queued_for_client() < self._unread:
            self._contact()

    def write(self, data: bytes) -> None:
        self.check_contact()
        try:
            os.write(self.master, data)
        except (BlockingIOError, OSError):
            pass  # nobody is reading: the bytes fall on the floor, as on a real line
        if self.on_contact is not None:
            self._unread = self._queued_for_client()

    def on_receive(self, loop: asyncio.AbstractEventLoop, receiver: Receiver) -> None:
        def readable() -> None:
            try:
                data = os.read(self.master, _READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if data:
                self._contact()
                receiver(data, self.write)

        loop.add_reader(self.master, readable)
        self._reader_added = True

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if self._reader_added and loop is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.master)
        with contextlib.suppress(FileNotFoundError):
            if self.link.is_symlink():
                self.link.unlink()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class NullModem:
    """Two ptys whose masters are wired together: a serial cable between two device paths.

    The server side (``inner``) is opened by a library that wants a device path (pymodbus'
    serial server); clients open ``outer.link``. ``cut = True`` drops every byte both ways,
    like a cable pulled or a device powered off: the client's requests time out.
    """

    def __init__(self, inner_link: Path, outer_link: Path) -> None:
        self.cut = False
        self.inner = PtyPort(inner_link)
        try:
            self.outer = PtyPort(outer_link)
        except BaseException:
            self.inner.close()
            raise

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        def to_outer(data: bytes, _reply: Callable[[bytes], None]) -> None:
            if not self.cut:
                self.outer.write(data)

        def to_inner(data: bytes, _reply: Callable[[bytes], None]) -> None:
            if not self.cut:
                self.inner.write(data)

        self.inner.on_receive(loop, to_outer)
        self.outer.on_receive(loop, to_inner)

    def close(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.outer.close(loop)
        self.inner.close(loop)


class TcpFanout:
    """A TCP server on 127.0.0.1: broadcast to every client, and hand received bytes on.

    ``on_close(reply)`` is called with a connection's ``reply`` function once that connection
    has closed, so per-connection state kept by the receiver can be dropped.
    """

    def __init__(
        self,
        receiver: Receiver | None = None,
        on_close: Callable[[Callable[[bytes], None]], None] | None = None,
    ) -> None:
        self._receiver = receiver
        self._on_close = on_close
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self.on_contact: Contact | None = None  # called at each client's connection

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._client, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.on_contact is not None:
            self.on_contact()

        def reply(data: bytes) -> None:
            if not writer.is_closing():
                writer.write(data)

        try:
            while data := await reader.read(_READ_SIZE):
                if self._receiver is not None:
                    self._receiver(data, reply)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            if self._on_close is not None:
                self._on_close(reply)

    def broadcast(self, data: bytes) -> None:
        for writer in list(self._writers):
            if writer.is_closing():
                self._writers.discard(writer)
                continue
            # A client that stops reading must not grow our memory without bound.
            if writer.transport.get_write_buffer_size() < 64 * 1024:
                writer.write(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
