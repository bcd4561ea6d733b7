"""A stand-in gate process for the sync fault tests: appends entries and runs an Outbox.

python -m tests.central.gate_proc LEDGER SIGNER_FILE SITE PORT COUNT INTERVAL_S [BATCH]

Appends COUNT entries (one every INTERVAL_S seconds) then keeps publishing until killed.
Prints "appended N" after each append so the parent can see progress.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edge_agent.sync.mqtt import MqttSettings
from edge_agent.sync.outbox import Outbox
from ledger.keys import read_signer_file
from ledger.store import LedgerStore
from tests.central.sync_helpers import tare_body


def main(argv: list[str]) -> None:
    ledger, signer_file, site, port, count, interval = argv[:6]
    batch = int(argv[6]) if len(argv) > 6 else 50
    signer = read_signer_file(signer_file)
    store = LedgerStore.open(Path(ledger), site=site, signer=signer)
    outbox = Outbox(store, site, MqttSettings(port=int(port), keepalive=5), signer=signer,
                    batch_size=batch, ack_timeout=3.0, poll_interval=0.05,
                    checkpoint_interval=0.5, client_id=f"edge-{site}")
    outbox.start()
    start = store.size
    for i in range(start, int(count)):
        store.append("weighing", tare_body(site, i))
        outbox.notify()
        print(f"appended {i + 1}", flush=True)
        time.sleep(float(interval))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1:])
