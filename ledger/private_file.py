"""Write secrets and generated configs so that only the owner can ever read them.

One helper for every config, key and password file coalgate generates. The file is created
with ``os.open(..., 0o600)`` under a temporary name in the target directory and renamed over
the target: there is no moment when the content sits in a file with wider permissions (a
``chmod`` after ``write_text`` leaves such a moment, and ``O_TRUNC`` on an existing 0644 file
would keep its 0644), and readers never see half a file.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["PRIVATE_MODE", "is_private", "write_private"]

PRIVATE_MODE = 0o600


def write_private(path: str | os.PathLike[str], data: str | bytes, *,
                  overwrite: bool = True) -> Path:
    """Atomically write ``data`` (str: UTF-8) to ``path`` with mode 0600; returns the path.

    ``overwrite=False`` refuses an existing file (FileExistsError), for keys that must never
    be replaced by accident. The parent directory is created (0700) when missing.
    """
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: already exists; refusing to overwrite it")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        try:
            os.fchmod(fd, PRIVATE_MODE)  # the umask can only remove bits; be explicit anyway
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if someone created the target meanwhile
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def is_private(path: str | os.PathLike[str]) -> bool:
    """Whether neither group nor others have any access to ``path``."""
    return not stat.S_IMODE(os.stat(path).st_mode) & (stat.S_IRWXG | stat.S_IRWXO)
