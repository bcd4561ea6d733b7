#!/usr/bin/env python3
"""Central ingest throughput: verified entries/s, gate ledger → Mosquitto → PostgreSQL.

Runs the real path — Outbox publishers (one per site, stop-and-wait batches), a private
Mosquitto, 1 then 2 ingest worker *processes* (python -m central.ingest) on one shared
subscription, projections included — and, in the same run, the raw ceilings of each stage:
Ed25519 verifies/s (one core), broker QoS 1 messages/s (pub → sub through the same Mosquitto),
PostgreSQL COPY rows/s into the entries table. Prints JSON; each end-to-end figure is also
given as a ratio of each ceiling.

    .venv/bin/python scripts/bench_central.py [--sites 4] [--per-site 3000] [--batch 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from central.api.schemas import SiteIn  # noqa: E402
from central.db import migrate  # noqa: E402
from central.sites import enrol_site  # noqa: E402
from edge_agent.sync.mqtt import MqttSettings, make_client  # noqa: E402
from edge_agent.sync.outbox import ACKED_META_KEY, Outbox  # noqa: E402
from ledger.keys import SignerKey  # noqa: E402
from ledger.store import LedgerStore  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "mosquitto.conf"
    conf.write_text(f"user root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 1000000\nmax_inflight_messages 0\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


def make_db() -> str:
    name = "coalgate_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(url) as conn:
        migrate(conn)
    return url


def drop_db(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def body(site: str, i: int) -> dict[str, Any]:
    return {"txn": f"{site}-20261128-{i}", "pass": "tare", "plate": f"陕K{i % 90000 + 10000}",
            "plate_conf_pm": 990, "plate_source": "anpr", "axles": 6, "weight_kg": 15000,
            "gross_kg": None, "tare_kg": 15000, "net_kg": None, "tare_source": "measured",
            "tare_seq": None, "ticket_id": None, "limit_kg": 49000, "decision": "release",
            "reasons": [], "stable_ms": 1500, "snapshot_sha256": None}


def make_gates(work: Path, sites: int, per_site: int) -> list[tuple[str, SignerKey, Path]]:
    gates = []
    for n in range(sites):
        site = f"bench-{n}-{uuid.uuid4().hex[:6]}"
        key = SignerKey.generate(site)
        path = work / f"{site}.db"
        with LedgerStore.open(path, site=site, signer=key) as s:
            for start in range(0, per_site, 1000):
                s.append_batch([("weighing", body(site, i))
                                for i in range(start, min(per_site, start + 1000))])
        gates.append((site, key, path))
    return gates


def run_end_to_end(gates: list[tuple[str, SignerKey, Path]], workers: int, port: int,
                   work: Path, batch: int) -> dict[str, Any]:
    url = make_db()
    with psycopg.connect(url) as conn:
        for site, key, _ in gates:
            enrol_site(conn, SiteIn(id=site, enterprise="bench", name=site,
                                    verifier_key=key.verifier.to_text()))
    group = f"bench{workers}"
    conf = work / f"central{workers}.toml"
    conf.write_text(f'[database]\nurl = "{url}"\n[mqtt]\nport = {port}\n'
                    f'[witness]\nkey_file = "{work / "witness.key"}"\n'
                    f'[ingest]\nshare_group = "{group}"\n')
    log = (work / f"ingest{workers}.log").open("ab")
    procs = [subprocess.Popen([sys.executable, "-m", "central.ingest", "--config", str(conf)],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
             for _ in range(workers)]
    try:
        time.sleep(3.0)  # let the workers connect and subscribe
        dead = [p.returncode for p in procs if p.poll() is not None]
        if dead:
            raise SystemExit(f"ingest worker exited: {(work / f'ingest{workers}.log').read_text()}")
        total = 0
        boxes = []
        for site, _key, path in gates:
            with LedgerStore.open(path, site=site) as s:
                s.set_meta(ACKED_META_KEY, "-1")
                total += s.size
            boxes.append(Outbox(partial(LedgerStore.open, path, site=site), site,
                                MqttSettings(port=port), batch_size=batch, ack_timeout=5,
                                poll_interval=0.01, checkpoint_interval=1e9,
                                client_id=f"bench-edge-{site}"))
        t0 = time.perf_counter()
        for b in boxes:
            b.start()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if sum(b.acked_seq + 1 for b in boxes) >= total:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        for b in boxes:
            b.stop()
        with psycopg.connect(url) as conn:
            stored = conn.execute("SELECT count(*) FROM entries").fetchone()
        assert stored is not None and stored[0] == total, f"stored {stored} of {total}"
        return {"workers": workers, "entries": total, "seconds": round(elapsed, 3),
                "entries_per_s": round(total / elapsed)}
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        log.close()
        drop_db(url)


def ceiling_verify(n: int = 20000) -> float:
    key = SignerKey.generate("bench")
    msgs = [os.urandom(600) for _ in range(200)]
    sigs = [key.sign(m) for m in msgs]
    v = key.verifier
    t0 = time.perf_counter()
    for i in range(n):
        v.verify(msgs[i % 200], sigs[i % 200])
    return n / (time.perf_counter() - t0)


def ceiling_broker(port: int, n: int = 20000, size: int = 700) -> float:
    got = threading.Event()
    count = [0]
    sub = make_client(MqttSettings(port=port), "bench-sub")

    def on_message(*_: Any) -> None:
        count[0] += 1
        if count[0] >= n:
            got.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", port)
    sub.subscribe("bench/raw", qos=1)
    sub.loop_start()
    pub = make_client(MqttSettings(port=port), "bench-pub")
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.5)
    payload = b"x" * size
    t0 = time.perf_counter()
    for _ in range(n):
        pub.publish("bench/raw", payload, qos=1)
    got.wait(120)
    rate = count[0] / (time.perf_counter() - t0)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return rate


def ceiling_copy(gates: list[tuple[str, SignerKey, Path]], n: int = 20000) -> float:
    url = make_db()
    try:
        site, key, path = gates[0]
        with LedgerStore.open(path, site=site) as s:
            entries = list(s.iter_entries(0, min(n, s.size)))
        rows = [(site, se.entry.seq, se.entry.ts, se.entry.kind, se.leaf, se.hash, se.sig,
                 json.dumps(se.entry.body, ensure_ascii=False)) for se in entries]
        with psycopg.connect(url) as conn, conn.cursor() as cur:
            enrol_site(conn, SiteIn(id=site, enterprise="b", name=site,
                                    verifier_key=key.verifier.to_text()))
            cur.execute("SELECT coalgate_ensure_entries_partition(now())")
            conn.commit()
            t0 = time.perf_counter()
            with cur.copy("COPY entries (site, seq, ts, kind, leaf, hash, sig, body)"
                          " FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            conn.commit()
            return len(rows) / (time.perf_counter() - t0)
    finally:
        drop_db(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--per-site", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=200)
    args = ap.parse_args()
    # The machine is often shared (2 cores): record its load so figures can be read fairly.
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker, port = start_broker(work)
        try:
            gates = make_gates(work, args.sites, args.per_site)
            one = run_end_to_end(gates, 1, port, work, args.batch)
            two = run_end_to_end(gates, 2, port, work, args.batch)
            verify = ceiling_verify()
            msgs = ceiling_broker(port)
            copy = ceiling_copy(gates)
        finally:
            broker.terminate()
            broker.wait(10)
    out = {
        "benchmark": "central ingest end to end (Outbox → Mosquitto → ingest → PostgreSQL)",
        "sites": args.sites, "batch": args.batch,
        "load_average_1min": {"before": round(load_before[0], 2),
                              "after": round(os.getloadavg()[0], 2),
                              "cores": os.cpu_count()},
        "one_worker": one, "two_workers": two,
        "speedup_two_vs_one": round(two["entries_per_s"] / one["entries_per_s"], 2),
        "ceilings": {
            "ed25519_verifies_per_s_one_core": round(verify),
            "broker_qos1_msgs_per_s": round(msgs),
            "broker_entries_per_s_at_batch": round(msgs * args.batch),
            "postgres_copy_rows_per_s": round(copy),
        },
        "ratios_one_worker": {
            "vs_ed25519_verify": round(one["entries_per_s"] / verify, 3),
            "vs_copy": round(one["entries_per_s"] / copy, 3),
            "vs_broker_entries": round(one["entries_per_s"] / (msgs * args.batch), 4),
        },
        "ratios_two_workers": {
            "vs_ed25519_verify": round(two["entries_per_s"] / verify, 3),
            "vs_copy": round(two["entries_per_s"] / copy, 3),
            "vs_broker_entries": round(two["entries_per_s"] / (msgs * args.batch), 4),
        },
    }
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
