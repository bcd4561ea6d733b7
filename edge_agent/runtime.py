"""The agent runtime (``coalgate edge run``): devices → controller → ledger, console, outbox.

One asyncio loop. Device adapters put events on a queue; a single task feeds them to the pure
:class:`GateController` with the wall clock and carries out its actions in order — ledger
entries are durable before the barrier moves. Structured JSON log lines go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from edge_agent.config import SiteConfig
from edge_agent.devices.io import GateIO, NoIO, make_io
from edge_agent.devices.scale import ModbusScale, StreamScale, make_scale
from edge_agent.devices.scanner import CameraQrScanner, LineScanner
from edge_agent.devices.streams import DeviceLost
from edge_agent.gate import (
    Action,
    Barrier,
    DeviceStatus,
    Event,
    GateController,
    Inputs,
    MarkTicketUsed,
    Operator,
    OperatorRefused,
    PlateRead,
    Record,
    Recorded,
    RecoveredTxn,
    Signals,
    Tick,
    VehicleBook,
)

AGENT_VERSION = "0.1.0"
TICK_S = 0.2


class RuntimeError_(Exception):
    """The agent cannot start (bad key, damaged ledger…); the message says how to fix it."""


class Log:
    """One JSON object per line: ``ts``, ``level``, ``msg`` and fields."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr

    def __call__(self, msg: str, level: str = "info", **fields: Any) -> None:
        now = time.time()
        ms = int(now * 1000) % 1000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{ms:03d}Z"
        rec = {"ts": stamp, "level": level, "msg": msg, **fields}
        self.out.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
        self.out.flush()


def ts_ms(ts: str) -> int:
    from ledger.entry import parse_ts

    return int(parse_ts(ts).timestamp() * 1000)


@dataclass
class Replay:
    """What the ledger says about the gate's past: the book and any open transaction."""

    book: VehicleBook
    recovered: RecoveredTxn | None
    size: int
    weighings: list[tuple[int, str, dict[str, Any], str]]  # (seq, hash hex, body, ts), recent


def _rfc3339(ms: int | None) -> str | None:
    if ms is None:
        return None
    t = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms % 1000:03d}Z"


def gate_situation_of(status: dict[str, Any]) -> dict[str, Any]:
    """GateController.gate_status() as the heartbeat's ``gate`` object (docs/protocol.md)."""
    return {"state": status["state"],
            "last_weighing_ts": _rfc3339(status["last_weighing_ms"]),
            "waiting_since": _rfc3339(status["waiting_since_ms"])}


def vehicle_book(cfg: SiteConfig) -> VehicleBook:
    """The registered vehicles (车辆备案) of the config, keyed by the normalised plate the
    readers report (config.Vehicle normalises it)."""
    book = VehicleBook()
    for v in cfg.vehicles:
        if v.axles is not None:
            book.axles[v.plate] = v.axles
        if v.tare_kg is not None:
            book.registered_tares[v.plate] = v.tare_kg
    return book


def replay_ledger(store: Any, book: VehicleBook) -> Replay:
    """Fold every entry into ``book``; find the last transaction left open by a power cut."""
    txns: dict[str, dict[str, Any]] = {}
    last_txn: str | None = None
    weighings: list[tuple[int, str, dict[str, Any], str]] = []
    for se in store.iter_entries():
        e = se.entry
        body = e.body
        book.replay(e.seq, e.kind, body, ts_ms(e.ts))
        if e.kind == "weighing":
            weighings = weighings[-199:] + [(e.seq, se.hash.hex(), body, e.ts)]
        txn = body.get("txn")
        if not isinstance(txn, str):
            continue
        st = txns.setdefault(txn, {"weighing": None, "seq": None, "barrier_up": False,
                                   "closed": False})
        last_txn = txn
        if e.kind == "weighing":
            st["weighing"], st["seq"] = body, e.seq
        elif e.kind == "barrier":
            st["barrier_up"] = body.get("action") == "up"
            if body.get("action") == "down" and st["weighing"] is not None:
                st["closed"] = True
        elif e.kind in ("passage", "recovery"):
            st["closed"] = True
        elif e.kind == "override" and body.get("action") == "void":
            st["closed"] = True
    recovered = None
    if last_txn is not None and not txns[last_txn]["closed"]:
        st = txns[last_txn]
        recovered = RecoveredTxn(last_txn, st["weighing"], st["seq"], st["barrier_up"])
    return Replay(book, recovered, store.size, weighings)


@dataclass
class Agent:
    cfg: SiteConfig
    log: Log = field(default_factory=Log)
    clock: Callable[[], float] = time.time
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    listeners: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    recent: list[dict[str, Any]] = field(default_factory=list)  # today's transactions
    latency_ms: list[float] = field(default_factory=list)  # stable sample -> coil write

    def __post_init__(self) -> None:
        from ledger.errors import LedgerError
        from ledger.keys import read_signer_file
        from ledger.store import LedgerStore

        try:
            self.signer = read_signer_file(self.cfg.site.key)
        except (LedgerError, OSError) as exc:
            raise RuntimeError_(f"site key {self.cfg.site.key}: {exc}") from exc
        Path(self.cfg.site.ledger).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.store = LedgerStore.open(self.cfg.site.ledger, site=self.cfg.site.id,
                                          signer=self.signer)
        except (LedgerError, OSError) as exc:
            raise RuntimeError_(f"ledger {self.cfg.site.ledger}: {exc}") from exc
        report = self.store.verify(self.signer.verifier)
        if not report.ok:
            raise RuntimeError_(
                f"ledger {self.cfg.site.ledger} fails verification: {report}; keep the file for "
                f"the auditor and start a new ledger only with the bureau's approval"
            )
        rp = replay_ledger(self.store, vehicle_book(self.cfg))
        for seq, h, body, ts in rp.weighings:
            self._note_txn(body, seq, h, ts[11:19])
        self.verifier = self._make_verifier()
        self.ctrl = GateController(self.cfg.gate_policy(), book=rp.book, verifier=self.verifier,
                                   recovered=rp.recovered)
        if rp.weighings:  # the heartbeat's last weighing survives a restart
            self.ctrl.last_weighing_ms = ts_ms(rp.weighings[-1][3])
        self.log("ledger verified", size=rp.size,
                 recovered_txn=rp.recovered.txn if rp.recovered else None)
        self.scale: StreamScale | ModbusScale = make_scale(self.cfg.scale, self.emit)
        self.io: GateIO = make_io(self.cfg.io, self.emit)
        self.scanner: LineScanner | CameraQrScanner | None = None
        if self.cfg.scanner.kind in ("serial", "tcp"):
            self.scanner = LineScanner(self.cfg.scanner, self.emit)
        elif self.cfg.scanner.kind == "camera":
            self.scanner = CameraQrScanner(self.cfg.scanner, self.emit)
        self.outbox: Any = None
        self.stopping = asyncio.Event()
        self._stable_at: float | None = None
        self._camera_busy = False
        self._read_txns: list[str] = []  # transactions the camera was read for (recent)
        # JPEG snapshots of plate reads, named by SHA-256 (console: /api/snapshots/<hash>.jpg).
        self.snapshot_dir = Path(self.cfg.site.ledger).parent / "snapshots"
        self.plate_worker: Any = None
        self.console_port: int | None = None
        self._lock = asyncio.Lock()
        # What the status heartbeat says about the gate (swapped whole; the outbox reads it).
        self.gate_situation: dict[str, Any] = gate_situation_of(self.ctrl.gate_status())

    def _make_verifier(self) -> Any:
        try:
            from edge_agent.tickets import GateTicketVerifier
        except ImportError:  # pragma: no cover - tickets package missing
            return None
        from edge_agent.config import ConfigError
        from ledger.errors import LedgerError

        Path(self.cfg.tickets.store).parent.mkdir(parents=True, exist_ok=True)
        try:
            roots = self.cfg.tickets.trust_root_keys()
            return GateTicketVerifier(self.cfg.tickets.site or self.cfg.site.id,
                                      Path(self.cfg.tickets.store), trust_roots=roots,
                                      gate_site=self.cfg.site.id)
        except (ConfigError, LedgerError) as exc:
            raise RuntimeError_(f"tickets: {exc}") from exc

    # ------------------------------------------------------------------ events in
    def emit(self, ev: Event) -> None:
        """Thread-unsafe: adapters run in the loop. Use ``emit_threadsafe`` from threads."""
        self.queue.put_nowait(ev)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def operator(self, op: Operator) -> list[Action]:
        """Run an operator action now (console); raises OperatorRefused with the reason."""
        async with self._lock:
            actions = self.ctrl.handle(op, self.now_ms())
            await self._execute(actions)
        self._broadcast()
        return actions

    async def feed(self, ev: Event) -> None:
        """Handle one event now and carry out its actions (console pushes, tests)."""
        async with self._lock:
            await self._execute(self.ctrl.handle(ev, self.now_ms()))

    # ------------------------------------------------------------------ actions out
    async def _execute(self, actions: list[Action]) -> None:
        queue = list(actions)
        while queue:
            a = queue.pop(0)
            if isinstance(a, Record):
                se = self.store.append(a.kind, a.body)
                seq = se.entry.seq
                self.log("entry", kind=a.kind, seq=seq, **_short(a.body))
                if a.kind == "weighing":
                    self._note_txn(a.body, seq, se.hash.hex())
                if a.ref:
                    queue[:0] = self.ctrl.handle(Recorded(a.ref, seq), self.now_ms())
            elif isinstance(a, Barrier):
                try:
                    if not getattr(self.io, "online", False):
                        await self._wait_io_online(2.0)  # e.g. the barrier-down at start-up
                    await self.io.barrier(a.up)
                    if a.up and self._stable_at is not None:
                        self.latency_ms.append((time.perf_counter() - self._stable_at) * 1000)
                    self.log("barrier", up=a.up)
                except DeviceLost as exc:
                    self.log("barrier command failed", level="error", up=a.up, error=str(exc))
                    queue[:0] = self.ctrl.handle(DeviceStatus("io", False, {"error": str(exc)}),
                                                 self.now_ms())
            elif isinstance(a, Signals):
                with contextlib.suppress(DeviceLost):
                    await self.io.signals(a)
            elif isinstance(a, MarkTicketUsed):
                if self.verifier is not None:
                    from datetime import UTC, datetime

                    self.verifier.mark_used(a.ticket_id, seq=a.seq, now=datetime.now(UTC))

    async def _wait_io_online(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not getattr(self.io, "online", False) and time.monotonic() < end:
            await asyncio.sleep(0.05)

    def _note_txn(self, body: dict[str, Any], seq: int, entry_hash: str,
                  hms: str | None = None) -> None:
        row = {k: body.get(k) for k in ("txn", "pass", "plate", "gross_kg", "tare_kg", "net_kg",
                                        "weight_kg", "decision", "reasons", "ticket_id")}
        row.update(seq=seq, hash=entry_hash, time=hms or time.strftime("%H:%M:%S", time.gmtime()))
        self.recent = [r for r in self.recent if r["txn"] != body["txn"]][-199:] + [row]

    # ------------------------------------------------------------------ main loop
    async def _controller_loop(self) -> None:
        await self._execute(self.ctrl.start(self.now_ms()))
        await self._execute([Record("config", {
            "sha256": hashlib.sha256(self.cfg.model_dump_json().encode()).hexdigest(),
            "policy": {"ticket_required": self.cfg.policy.ticket_required,
                       "quota": self.cfg.policy.quota, "mode": self.cfg.policy.mode},
            "agent_version": AGENT_VERSION,
        })])
        last_live = 0.0
        while not self.stopping.is_set():
            try:
                ev: Event = await asyncio.wait_for(self.queue.get(), TICK_S)
            except TimeoutError:
                ev = Tick()
            if isinstance(ev, Inputs):
                self.log("inputs", level="debug", **{k: int(v) for k, v in vars(ev).items()})
            elif isinstance(ev, PlateRead):
                self.log("plate", plate=ev.plate, conf_pm=ev.conf_pm, source=ev.source,
                         txn=ev.txn, seen_ms=ev.seen_ms)
            async with self._lock:
                before = self.ctrl.state
                t0 = time.perf_counter()
                actions = self.ctrl.handle(ev, self.now_ms())
                if before != self.ctrl.state:
                    self.log("state", frm=before, to=self.ctrl.state,
                             txn=self.ctrl.snapshot()["txn"])
                    if self.ctrl.state == "identify":
                        self._stable_at = t0
                    if self.ctrl.state in ("entering", "on_platform", "identify"):
                        self._maybe_read_plate()
                if actions:
                    await self._execute(actions)
                self.gate_situation = gate_situation_of(self.ctrl.gate_status())
            now = time.monotonic()
            if actions or now - last_live > 0.25:
                last_live = now
                self._broadcast()

    def _broadcast(self) -> None:
        snap = self.snapshot()
        for q in list(self.listeners):
            if q.qsize() < 50:
                q.put_nowait(snap)

    def snapshot(self) -> dict[str, Any]:
        s = self.ctrl.snapshot()
        s["site"] = self.cfg.site.id
        s["site_name"] = self.cfg.site.name
        s["devices"] = {"scale": self.scale.online, "io": getattr(self.io, "online", False)}
        s["scale_stats"] = vars(self.scale.stream.stats).copy() \
            if isinstance(self.scale, StreamScale) else {}
        return s

    def _maybe_read_plate(self) -> None:
        """Start reading the plate of the truck coming on, once per transaction."""
        cam = self.cfg.camera
        url = cam.snapshot_url or cam.mjpeg_url
        if not cam.read_plates or not url or self._camera_busy:
            return
        snap = self.ctrl.snapshot()
        txn = snap["txn"]
        # Read even when a pushed ANPR plate is already there: the gate's own read is the
        # independent check that catches a swapped front plate.
        if txn is None or txn in self._read_txns:
            return
        self._read_txns = self._read_txns[-20:] + [txn]
        self._camera_busy = True
        asyncio.get_running_loop().create_task(self._read_plate(url, txn))

    async def _read_plate(self, url: str, txn: str) -> None:
        from edge_agent.camera import CameraError, PlateWorker, grab_frames, keep_snapshot

        cam = self.cfg.camera
        try:
            frames = await grab_frames(url, cam.frames, cam.frame_interval_ms / 1000)
            if self.plate_worker is None:
                self.plate_worker = PlateWorker(min_plate_width=cam.min_plate_width_px,
                                                roi=cam.plate_roi,
                                                plate_width=cam.expected_plate_width_px)
            voted = await self.plate_worker.read(frames)
            if voted is None:
                self.log("no plate in camera frames", level="warning", txn=txn,
                         frames=len(frames))
                return
            digest = await asyncio.to_thread(keep_snapshot, self.snapshot_dir, voted.frame.jpeg)
            # seen_ms: the last frame's time, so a frame taken after the next truck reached
            # the entry loop makes the controller drop the whole read (it may show that truck).
            self.emit(PlateRead(voted.plate, voted.conf_pm, "reader", snapshot_sha256=digest,
                                seen_ms=max(f.taken_ms for f in frames), txn=txn))
        except CameraError as exc:
            self.log("camera read failed", level="warning", txn=txn, error=str(exc))
        except Exception as exc:  # camera trouble must never stop the gate
            self.log("plate read failed", level="error", txn=txn, error=repr(exc))
        finally:
            self._camera_busy = False

    async def _checkpoints(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.site.checkpoint_every_s)
            self.store.sign_checkpoint()
            self.log("checkpoint", size=self.store.size)

    def _start_outbox(self) -> None:
        if self.cfg.mqtt is None:
            return
        from edge_agent.sync import Outbox
        from edge_agent.sync.mqtt import GATE_SESSION_EXPIRY_S, MqttSettings

        m = self.cfg.mqtt
        try:
            password = Path(m.password_file).read_text().strip() if m.password_file else None
        except OSError as exc:
            raise RuntimeError_(f"mqtt.password_file {m.password_file}: {exc.strerror}; create "
                                f"it (one line, the broker password) or fix the path") from exc
        settings: MqttSettings = m.settings(password)
        # A persistent session (fixed client id edge-<site>) so the broker queues the ticket
        # deltas the central publishes while this gate is offline.
        self.outbox = Outbox(self.store, self.cfg.site.id, settings, signer=self.signer,
                             on_tickets=self._apply_ticket_delta,
                             session_expiry_s=GATE_SESSION_EXPIRY_S,
                             gate_status=lambda: self.gate_situation)
        self.outbox.start()
        self.log("outbox started", host=m.host, port=m.port, protocol=m.protocol, tls=m.tls)

    def _apply_ticket_delta(self, delta: dict[str, Any]) -> None:
        """Runs in the outbox thread; the verifier gives each thread its own store connection."""
        from datetime import UTC, datetime

        from edge_agent.tickets import TicketDeltaError

        if self.verifier is None:
            return
        try:
            self.verifier.apply_delta(delta, now=datetime.now(UTC))
        except TicketDeltaError as exc:
            self.log("ticket delta refused", level="warning", type=delta.get("type"),
                     error=str(exc))
            return
        self.log("ticket delta", level="debug", type=delta.get("type"),
                 ticket_id=delta.get("ticket_id"))

    async def run(self, *, console_port: int | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        tasks = [
            loop.create_task(self.scale.run(), name="scale"),
            loop.create_task(self.io.run(), name="io"),
            loop.create_task(self._checkpoints(), name="checkpoints"),
        ]
        if self.scanner is not None:
            tasks.append(loop.create_task(self.scanner.run(), name="scanner"))
        server = None
        port = self.cfg.console.port if console_port is None else console_port
        if port is not None:
            from edge_agent.console.app import serve

            server, bound = await serve(self, self.cfg.console.host, port)
            self.console_port = bound
            from edge_agent.config import console_warnings

            scheme = "https" if self.cfg.console.tls else "http"
            self.log("console", url=f"{scheme}://{self.cfg.console.host}:{bound}/")
            for warning in console_warnings(self.cfg):
                self.log("console warning", level="warning", warning=warning)
        self._start_outbox()
        if isinstance(self.io, NoIO):
            self.emit(Inputs())  # no beams or loops to read: start from "all clear"
        main = loop.create_task(self._controller_loop(), name="controller")
        self.log("started", site=self.cfg.site.id)
        stop = loop.create_task(self.stopping.wait())
        await asyncio.wait({main, stop}, return_when=asyncio.FIRST_COMPLETED)
        if main.done() and main.exception():
            self.log("controller crashed", level="critical", error=repr(main.exception()))
        self.stopping.set()
        for t in [*tasks, main]:
            t.cancel()
        await asyncio.gather(*tasks, main, return_exceptions=True)
        if server is not None:
            server.should_exit = True
            await asyncio.sleep(0.05)
        self.shutdown()

    def shutdown(self) -> None:
        if self.plate_worker is not None:
            self.plate_worker.close()
        if self.outbox is not None:
            self.outbox.stop()
        if self.verifier is not None:
            self.verifier.close()
        note = self.store.sign_checkpoint()
        self.log("stopped", size=self.store.size, checkpoint=note.splitlines()[1])
        self.store.close()


def _short(body: dict[str, Any]) -> dict[str, Any]:
    keys = ("txn", "code", "decision", "reasons", "weight_kg", "plate", "action", "state")
    return {k: body[k] for k in keys if k in body}


def run_agent(cfg: SiteConfig, *, console_port: int | None = None) -> None:
    async def main() -> None:
        agent = Agent(cfg)
        await agent.run(console_port=console_port)

    asyncio.run(main())


__all__ = ["Agent", "Log", "OperatorRefused", "RuntimeError_", "replay_ledger", "run_agent",
           "vehicle_book"]
