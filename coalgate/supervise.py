"""Child processes of `coalgate demo`: start, watch, restart, stop — and leave nothing behind.

Each child runs in its own process group, so stopping it also stops anything it started.
Output goes to a log file per child; a crash is reported with the tail of that log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Child", "ChildFailed"]


class ChildFailed(Exception):
    """A child process exited on its own more often than it may be restarted."""


@dataclass
class Child:
    """One supervised process: ``name`` for messages, ``argv``, a log file for its output."""

    name: str
    argv: Sequence[str]
    log_path: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    max_restarts: int = 3
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n"
                      .encode())
            log.flush()
            env = {**os.environ, **(self.env or {})}
            self.proc = subprocess.Popen(
                list(self.argv), cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """The exit status if the child has ended (and was not stopped by us), else None."""
        if self.proc is None:
            return None
        return self.proc.poll()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def restart(self) -> None:
        """Start again after a crash; raises ChildFailed when out of restarts."""
        status = self.exited()
        self.exits.append(status if status is not None else 0)
        if self.restarts >= self.max_restarts:
            raise ChildFailed(
                f"{self.name} exited with status {status} {self.restarts + 1} times; giving up. "
                f"Last lines of {self.log_path}:\n{self.log_tail()}"
            )
        self.restarts += 1
        self.stop()
        self.start()

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the child's process group, wait, then SIGKILL it. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(5)
        # Whatever the child left in its group (it should have left nothing) goes too.
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
