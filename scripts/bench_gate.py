#!/usr/bin/env python3
"""Gate decision latency: stable reading -> barrier coil written, and time added to a gate cycle.

1. Latency. N trucks are weighed through the real pieces: the pure GateController, a real
   LedgerStore (WAL, synchronous=FULL: the weighing and barrier entries are durable first) and
   a real Modbus TCP coil write to the simulator's gate IO (`coalgate sim run`, own process).
   Clock starts when the controller gets the sample that completes stability and stops when
   the coil write is acknowledged. Baseline, same run: the bare coil write alone.
2. Added cycle time. A settling truck (damped oscillation, tau = 0.8 s, 10 Hz indicator) is fed
   on a simulated clock; "physical settling" is the first moment after which every sample stays
   within ±1e of the final weight. Added = decision time - settling time (the stability window
   is the deliberate part of it) + the measured p50 latency.

Prints one JSON object. Example: .venv/bin/python scripts/bench_gate.py --trucks 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_agent.config import IoSection  # noqa: E402
from edge_agent.devices.io import ModbusIO  # noqa: E402
from edge_agent.gate import (  # noqa: E402
    Barrier,
    GateController,
    GatePolicy,
    Inputs,
    PlateRead,
    Record,
    Recorded,
    WeightSample,
)
from ledger.keys import SignerKey  # noqa: E402
from ledger.store import LedgerStore  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def start_sim(tmp: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    ep = tmp / "ep.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "coalgate", "sim", "run", "--scenario",
         str(ROOT / "config/scenarios/honest-one-pass.toml"), "--speed", "1",
         "--endpoints-out", str(ep), "--truth-out", str(tmp / "truth.jsonl"),
         "--dev-dir", str(tmp / "dev")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    end = time.monotonic() + 30
    while not ep.exists():
        if time.monotonic() > end:
            proc.kill()
            raise SystemExit("the simulator did not start")
        time.sleep(0.05)
    return proc, json.loads(ep.read_text())


async def latency(trucks: int, tmp: Path, io_ep: dict[str, Any]) -> dict[str, Any]:
    io = ModbusIO(IoSection(kind="modbus_tcp", host=io_ep["host"], port=io_ep["port"],
                            unit_id=io_ep["unit_id"]), lambda ev: None)
    runner = asyncio.create_task(io.run())
    while not io.online:
        await asyncio.sleep(0.02)
    # Baseline: the bare coil write round trip.
    base: list[float] = []
    for _ in range(trucks):
        t0 = time.perf_counter()
        await io.barrier(True)
        base.append((time.perf_counter() - t0) * 1000)
    store = LedgerStore.open(tmp / "bench.sqlite", site="bench",
                             signer=SignerKey.generate("bench"))
    ctrl = GateController(GatePolicy("bench", e_kg=20, stability_window_ms=2000))
    now = 1_795_000_000_000
    ctrl.handle(Inputs(), now)
    lat: list[float] = []
    for i in range(trucks):
        plate = f"陕K{10000 + i}"
        ctrl.handle(PlateRead(plate, 950, axles=6), now)
        ctrl.handle(Inputs(ir_entry=True), now)
        for k in range(1, 11):  # drive on across the entry beam
            now += 100
            ctrl.handle(WeightSample(15000 * k // 10), now)
        ctrl.handle(Inputs(), now)
        decided = False
        for _ in range(1000):
            if decided:
                break
            now += 100
            t0 = time.perf_counter()
            actions = ctrl.handle(WeightSample(15000), now)
            queue = list(actions)
            while queue:
                a = queue.pop(0)
                if isinstance(a, Record):
                    se = store.append(a.kind, a.body)
                    if a.ref:
                        queue[:0] = ctrl.handle(Recorded(a.ref, se.entry.seq), now)
                elif isinstance(a, Barrier) and a.up:
                    await io.barrier(True)
                    lat.append((time.perf_counter() - t0) * 1000)
                    decided = True
        # Drive off so the next truck starts from an empty platform.
        for io_state in (Inputs(ir_exit=True), Inputs(ir_exit=True, loop_exit=True)):
            ctrl.handle(io_state, now)
        for k in range(9, -1, -1):
            now += 100
            ctrl.handle(WeightSample(15000 * k // 10), now)
        ctrl.handle(Inputs(), now)
        for _ in range(5):
            now += 100
            store_actions = ctrl.handle(WeightSample(0), now)
            for a in store_actions:
                if isinstance(a, Record):
                    store.append(a.kind, a.body)
    store.close()
    runner.cancel()
    return {
        "trucks": trucks,
        "decision_to_coil_ms": {"p50": round(pct(lat, 50), 2), "p99": round(pct(lat, 99), 2),
                                "mean": round(statistics.fmean(lat), 2)},
        "baseline_bare_coil_write_ms": {"p50": round(pct(base, 50), 2),
                                        "p99": round(pct(base, 99), 2)},
        "ratio_p50": round(pct(lat, 50) / pct(base, 50), 2),
    }


def added_cycle_time(window_ms: int, p50_ms: float) -> dict[str, Any]:
    ctrl = GateController(GatePolicy("bench", e_kg=20, stability_window_ms=window_ms))
    t0 = 1_795_000_000_000
    ctrl.handle(Inputs(), t0)
    ctrl.handle(PlateRead("陕K12345", 950, axles=6), t0)
    final, amp, tau = 48800, 1500.0, 0.8
    samples = []
    for i in range(200):
        t = i * 0.1
        w = final + amp * math.exp(-t / tau) * math.cos(2 * math.pi * 1.1 * t)
        samples.append((t, int(round(w / 20)) * 20))
    settle = next(t for j, (t, _) in enumerate(samples)
                  if all(abs(w - final) <= 20 for _, w in samples[j:]))
    decided = None
    for t, w in samples:
        acts = ctrl.handle(WeightSample(w), t0 + int(t * 1000))
        if any(isinstance(a, Barrier) and a.up for a in acts):
            decided = t
            break
    assert decided is not None
    return {"stability_window_ms": window_ms, "physical_settle_s": round(settle, 2),
            "decision_s": round(decided, 2),
            "added_s": round(decided - settle + p50_ms / 1000, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trucks", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        proc, ep = start_sim(tmp)
        try:
            lat = asyncio.run(latency(args.trucks, tmp, ep["modbus"]["gate_io_tcp"]))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    p50 = lat["decision_to_coil_ms"]["p50"]
    out = {
        "bench": "gate",
        **lat,
        "added_cycle_time": [added_cycle_time(w, p50) for w in (1000, 2000, 3000)],
    }
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
