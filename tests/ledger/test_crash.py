"""Crash safety: SIGKILL a child while it appends; every returned append must survive."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from ledger.keys import SignerKey, write_signer_file
from ledger.store import LedgerStore

CHILD = Path(__file__).with_name("crash_child.py")
KILLS = 20


def test_sigkill_during_appends_loses_nothing_returned(tmp_path: Path) -> None:
    key = SignerKey.generate("mine-a")
    keyfile = tmp_path / "site.key"
    write_signer_file(keyfile, key)
    db = tmp_path / "ledger.db"
    rng = random.Random(20261128)
    promised: dict[int, str] = {}
    for round_no in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(keyfile)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n", child.stderr.read() if child.stderr else ""
            # Let it run for a random number of appends, then a random sub-millisecond moment
            # more, so the kill lands anywhere: mid-transaction, mid-fsync, between appends.
            lines = [child.stdout.readline() for _ in range(rng.randint(1, 40))]
            time.sleep(rng.random() / 500)
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            # Lines the child wrote before it died are still in the pipe: they were promised.
            for line in "".join(lines).splitlines() + child.stdout.read().splitlines():
                seq_text, digest = line.split()
                promised[int(seq_text)] = digest
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            for stream in (child.stdout, child.stderr):
                if stream:
                    stream.close()
        assert child.returncode == -signal.SIGKILL, f"round {round_no}: child exited by itself"
        with LedgerStore.open(db) as store:
            report = store.verify(key.verifier)
            assert report.ok, f"round {round_no}: {report.problem}"
            assert report.size > max(promised)
            for seq, digest in promised.items():
                assert store.get(seq).hash.hex() == digest, f"round {round_no}: seq {seq} changed"
    assert len(promised) > KILLS


def test_two_writers_on_one_file_never_fork_the_log(tmp_path: Path) -> None:
    key = SignerKey.generate("mine-a")
    keyfile = tmp_path / "site.key"
    write_signer_file(keyfile, key)
    db = tmp_path / "ledger.db"
    with LedgerStore.open(db, site="mine-a", signer=key) as store:
        store.append("config", {"sha256": "00"})
    children = [
        subprocess.Popen([sys.executable, str(CHILD), str(db), str(keyfile)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(2)
    ]
    seen: list[set[int]] = []
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        # Both must have made progress while the other was writing.
        for child in children:
            assert child.stdout is not None
            seen.append({int(child.stdout.readline().split()[0]) for _ in range(30)})
    finally:
        for child in children:
            child.kill()
            child.wait()
            if child.stdout:
                child.stdout.close()
    assert not seen[0] & seen[1], "two writers were given the same seq"
    with LedgerStore.open(db) as store:
        report = store.verify(key.verifier)
    assert report.ok, report.problem
