#!/usr/bin/env python3
"""Alarm latency: a gate's entry published on MQTT → the alarm on the API's SSE stream.

The real path: a signed `passage` (truck leaving unreleased) published QoS 1 to a private
Mosquitto, an ingest worker process verifying and storing it with the projections (which raise
`escape`), PostgreSQL NOTIFY at commit, the API's listener, and an SSE client reading
/api/v1/alarms/stream. One truck at a time, so each figure is a latency, not a queue.

Baselines measured in the same run, the floors of the two transports on the path:
MQTT QoS 1 pub → sub through the same broker, and PostgreSQL NOTIFY → LISTEN (insert + commit →
notification received). The ratio is alarm latency / (MQTT + NOTIFY) at p50.

    .venv/bin/python scripts/bench_alarms.py [--trials 200]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import uvicorn  # noqa: E402
from bench_central import drop_db, free_port, make_db, start_broker  # noqa: E402

from central.api import create_app  # noqa: E402
from central.api.schemas import SiteIn  # noqa: E402
from central.auth import create_token  # noqa: E402
from central.settings import load_settings  # noqa: E402
from central.sites import enrol_site  # noqa: E402
from edge_agent.sync.mqtt import MqttSettings, make_client  # noqa: E402
from edge_agent.sync.protocol import LedgerBatch, topic  # noqa: E402
from ledger.keys import SignerKey  # noqa: E402
from ledger.store import LedgerStore  # noqa: E402


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(pct(ms, 50), 2), "p99_ms": round(pct(ms, 99), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "n": len(ms)}


def connected_client(port: int, name: str) -> Any:
    client = make_client(MqttSettings(port=port), f"{name}-{uuid.uuid4().hex[:6]}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def mqtt_baseline(port: int, trials: int) -> list[float]:
    got: queue.Queue[float] = queue.Queue()
    sub = connected_client(port, "bsub")
    sub.on_message = lambda c, u, m: got.put(time.perf_counter())
    sub.subscribe("bench/latency", qos=1)
    pub = connected_client(port, "bpub")
    time.sleep(0.3)
    out = []
    for _ in range(trials):
        t0 = time.perf_counter()
        pub.publish("bench/latency", b"x" * 600, qos=1)
        out.append((got.get(timeout=5) - t0) * 1000)
    for c in (sub, pub):
        c.loop_stop()
        c.disconnect()
    return out


def notify_baseline(url: str, trials: int) -> list[float]:
    listener = psycopg.connect(url, autocommit=True)
    listener.execute("LISTEN bench_latency")
    writer = psycopg.connect(url)
    writer.execute("CREATE TEMP TABLE t (x int)")
    out = []
    for i in range(trials):
        t0 = time.perf_counter()
        writer.execute("INSERT INTO t VALUES (%s)", (i,))
        writer.execute("SELECT pg_notify('bench_latency', %s)", (str(i),))
        writer.commit()
        next(listener.notifies(timeout=5))
        out.append((time.perf_counter() - t0) * 1000)
    listener.close()
    writer.close()
    return out


class SseReader(threading.Thread):
    def __init__(self, base: str, token: str) -> None:
        super().__init__(daemon=True)
        self.base, self.token = base, token
        self.arrivals: queue.Queue[tuple[int, float]] = queue.Queue()
        self.ready = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None))

    def run(self) -> None:
        try:
            with self.client.stream(
                "GET", f"{self.base}/api/v1/alarms/stream",
                headers={"Authorization": f"Bearer {self.token}"},
            ) as r:
                for line in r.iter_lines():
                    if line.startswith("event: ready"):
                        self.ready.set()
                    if line.startswith("data:") and '"code"' in line:
                        alarm = json.loads(line[5:])
                        self.arrivals.put((alarm["seq"], time.perf_counter()))
        except (httpx.HTTPError, RuntimeError):
            pass  # stop() closed the connection

    def stop(self) -> None:
        self.client.close()
        self.join(5)


def alarm_latency(port: int, url: str, work: Path, trials: int) -> list[float]:
    site = f"lat-{uuid.uuid4().hex[:6]}"
    key = SignerKey.generate(site)
    with psycopg.connect(url) as conn:
        enrol_site(conn, SiteIn(id=site, enterprise="bench", name=site,
                                verifier_key=key.verifier.to_text()))
        token, _ = create_token(conn, "bureau")
    conf = work / "central.toml"
    conf.write_text(f'[database]\nurl = "{url}"\n[mqtt]\nport = {port}\n'
                    f'[witness]\nkey_file = "{work / "witness.key"}"\n'
                    '[ingest]\nshare_group = "lat"\n')
    log = (work / "ingest.log").open("ab")
    ingest = subprocess.Popen([sys.executable, "-m", "central.ingest", "--config", str(conf)],
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    api_port = free_port()
    settings = load_settings(None, env={"COALGATE_CENTRAL__API__SSE_PING_S": "5"})
    server = uvicorn.Server(uvicorn.Config(create_app(settings, url=url, sweep_offline_sites=False),
                                           host="127.0.0.1", port=api_port, log_level="warning"))
    server_thread = threading.Thread(target=server.run, daemon=True)
    server_thread.start()
    while not server.started:
        time.sleep(0.05)
    reader = SseReader(f"http://127.0.0.1:{api_port}", token)
    reader.start()
    assert reader.ready.wait(10), "SSE stream did not open"
    gate = connected_client(port, "gate")
    out: list[float] = []
    try:
        with LedgerStore.open(work / f"{site}.db", site=site, signer=key) as store:
            # Warm-up, not counted: resend the first entry until the worker (just started,
            # importing and subscribing) stores it and its alarm arrives.
            first = store.append("passage", {"txn": None, "direction": "exit",
                                             "released": False})
            deadline = time.monotonic() + 60
            while True:
                gate.publish(topic(site, "ledger"), LedgerBatch(site, 0, (first,)).encode(), qos=1)
                try:
                    reader.arrivals.get(timeout=1)
                    break
                except queue.Empty:
                    if time.monotonic() > deadline:
                        raise SystemExit("the ingest worker stored nothing in 60 s; see "
                                         f"{work / 'ingest.log'}") from None
            for _ in range(trials):
                se = store.append("passage", {"txn": None, "direction": "exit",
                                              "released": False})
                seq = se.entry.seq
                payload = LedgerBatch(site, seq, (se,)).encode()
                t0 = time.perf_counter()
                gate.publish(topic(site, "ledger"), payload, qos=1)
                got_seq, t1 = reader.arrivals.get(timeout=10)
                assert got_seq == seq, f"alarm for seq {got_seq}, expected {seq}"
                out.append((t1 - t0) * 1000)
    finally:
        gate.loop_stop()
        gate.disconnect()
        reader.stop()  # uvicorn waits for open streams before it stops
        server.should_exit = True
        server_thread.join(10)
        ingest.terminate()
        ingest.wait(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker, port = start_broker(work)
        url = make_db()
        try:
            mqtt_ms = mqtt_baseline(port, args.trials)
            notify_ms = notify_baseline(url, args.trials)
            alarm_ms = alarm_latency(port, url, work, args.trials)
        finally:
            broker.terminate()
            broker.wait(10)
            drop_db(url)
    floor = pct(mqtt_ms, 50) + pct(notify_ms, 50)
    print(json.dumps({
        "alarm_latency_entry_published_to_sse": summary(alarm_ms),
        "baseline_mqtt_qos1_pub_to_sub": summary(mqtt_ms),
        "baseline_pg_notify_to_listen": summary(notify_ms),
        "ratio_p50_alarm_over_transport_floor": round(pct(alarm_ms, 50) / floor, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
