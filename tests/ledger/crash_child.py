"""Child process for the crash test: appends forever, reporting each seq once it is durable.

Usage: python crash_child.py DB KEYFILE
Each line on stdout is ``<seq> <hash hex>``, written and flushed only after ``append`` (or
``append_batch``) has returned — i.e. only for entries the ledger promised were durable.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.keys import read_signer_file  # noqa: E402
from ledger.store import LedgerStore  # noqa: E402


def main() -> None:
    db, keyfile = sys.argv[1], sys.argv[2]
    key = read_signer_file(keyfile)
    rng = random.Random()
    with LedgerStore.open(db, site="mine-a", signer=key) as store:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        i = 0
        while True:
            i += 1
            if rng.random() < 0.2:
                done = store.append_batch(
                    [("weighing", {"n": i, "k": k, "gross_kg": 40000 + k}) for k in range(25)]
                )
            else:
                done = [store.append("weighing", {"n": i, "gross_kg": 40000 + i})]
            sys.stdout.write("".join(f"{se.entry.seq} {se.hash.hex()}\n" for se in done))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
