"""The edge outbox: the gate's SQLite ledger, published to the central over MQTT.

The ledger *is* the outbox: nothing is queued anywhere else. The outbox remembers only the
highest seq the central acknowledged (``store.set_meta("sync.acked_seq")``), and after any
restart, reconnect, lost ack or resend request it publishes again from there. The central is
idempotent on (site, seq), so sending twice is harmless and sending never is impossible.

Flow control is stop-and-wait per batch: one batch of up to ``batch_size`` entries in flight,
the next one after its ack (or again after ``ack_timeout``). With shared subscriptions two
batches in flight would reach different ingest workers out of order and cause needless gaps.

Threads: paho's network thread only queues events; one outbox thread does every store read
and write, so the gate's own thread is never blocked by the network.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from edge_agent.sync.mqtt import MqttSettings, connect_async, make_client
from edge_agent.sync.protocol import (
    Ack,
    CheckpointMessage,
    LedgerBatch,
    ProtocolError,
    ResendRequest,
    Status,
    decode_json,
    topic,
)
from ledger.entry import SignedEntry
from ledger.keys import SignerKey
from ledger.store import LedgerStore

__all__ = ["Outbox", "OutboxStore", "ACKED_META_KEY", "COSIGNED_META_KEY"]

log = logging.getLogger(__name__)

ACKED_META_KEY = "sync.acked_seq"
COSIGNED_META_KEY = "sync.cosigned_checkpoint"


class OutboxStore(Protocol):
    """The part of ``ledger.store.LedgerStore`` the outbox uses."""

    @property
    def size(self) -> int: ...

    def iter_entries(self, start: int = 0, stop: int | None = None) -> Any: ...

    def get_meta(self, key: str) -> str | None: ...

    def set_meta(self, key: str, value: str) -> None: ...

    def sign_checkpoint(self) -> str: ...


@dataclass(frozen=True)
class _Event:
    kind: str  # connected | disconnected | ack | cmd | tickets
    data: Any = None


class Outbox:
    """Publishes a site's ledger from the last acked seq; see the module docstring.

    ``store`` is the gate's ``LedgerStore``: the outbox opens its own connection to the same
    file in its thread (SQLite connections belong to the thread that opened them). A callable
    returning a store is accepted too. With ``signer`` (the site key) the outbox also signs and
    publishes a checkpoint when it has caught up, at most every ``checkpoint_interval`` s.

    ``session_expiry_s`` asks the broker for a persistent session (fixed ``client_id``): ticket
    deltas the central publishes while the gate is offline are queued for it (the ``tickets``
    topic, central.tickets.distribution). The ledger does not depend on it: on every connect
    the outbox resends from the last acked seq, and acks or resend requests the broker queued
    are only ever a true "stored up to" or a harmless rewind.
    """

    def __init__(
        self,
        store: LedgerStore | Callable[[], OutboxStore],
        site_id: str,
        mqtt_settings: MqttSettings,
        *,
        signer: SignerKey | None = None,
        batch_size: int = 200,
        ack_timeout: float = 10.0,
        poll_interval: float = 0.5,
        checkpoint_interval: float = 60.0,
        heartbeat_interval: float = 30.0,
        on_tickets: Callable[[dict[str, Any]], None] | None = None,
        client_id: str | None = None,
        session_expiry_s: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate_status: Callable[[], dict[str, Any] | None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.site_id = site_id
        if isinstance(store, LedgerStore):
            path = store.path
            self._store_factory: Callable[[], OutboxStore] = lambda: LedgerStore.open(
                path, site=site_id, signer=signer
            )
        else:
            self._store_factory = store
        self._can_checkpoint = signer is not None or not isinstance(store, LedgerStore)
        self._settings = mqtt_settings
        self._batch_size = batch_size
        self._ack_timeout = ack_timeout
        self._poll = poll_interval
        self._checkpoint_interval = checkpoint_interval
        # A quiet gate (no trucks) still says it is alive, or the central raises site_offline.
        self._heartbeat_interval = heartbeat_interval
        self._on_tickets = on_tickets
        self._clock = clock
        # The gate's situation for the heartbeat (protocol.gate_situation); called from the
        # outbox thread, so it must only read a value the gate loop swaps in whole.
        self._gate_status = gate_status
        self._gate_sent: dict[str, Any] | None = None
        self._events: queue.Queue[_Event] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session_expiry_s = session_expiry_s
        self._client = make_client(mqtt_settings, client_id or f"edge-{site_id}",
                                   persistent=session_expiry_s is not None)
        self._client.will_set(
            topic(site_id, "status"), Status("offline").encode(), qos=1, retain=True
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        # Observable state (read by tests and the operator console; written by the outbox thread).
        self.acked_seq = -1
        self.cosigned_checkpoint: str | None = None
        self.batches_sent = 0
        self.last_error: str | None = None
        self.caught_up = threading.Event()

    # -- public API ----------------------------------------------------------------------------

    def start(self) -> None:
        connect_async(self._client, self._settings, session_expiry_s=self._session_expiry_s)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"outbox-{self.site_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish status offline, disconnect, and stop the outbox thread."""
        self._stop.set()
        self._events.put(_Event("wake"))
        if self._thread is not None:
            self._thread.join(timeout)
        if self._connected.is_set():
            info = self._client.publish(topic(self.site_id, "status"),
                                        Status("offline", _now()).encode(), qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()

    def notify(self) -> None:
        """Tell the outbox new entries were appended (otherwise it notices within a poll)."""
        self._events.put(_Event("wake"))

    def publish_live(self, data: dict[str, Any]) -> None:
        """Live weight/state, QoS 0: dropped while offline, never queued."""
        if self._connected.is_set():
            self._client.publish(topic(self.site_id, "live"),
                                 json.dumps({"v": 1, **data}, ensure_ascii=False), qos=0)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- paho callbacks (network thread): only queue events ------------------------------------

    def _on_connect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            log.error("site %s: %s", self.site_id, self.last_error)
            return
        c.subscribe([(topic(self.site_id, "ack"), 1), (topic(self.site_id, "cmd"), 1),
                     (topic(self.site_id, "tickets"), 1)])
        self._events.put(_Event("connected"))

    def _on_disconnect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self._connected.clear()
        self._events.put(_Event("disconnected"))

    def _on_message(self, c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        channel = msg.topic.rsplit("/", 1)[-1]
        payload = bytes(msg.payload)
        try:
            if channel == "ack":
                self._events.put(_Event("ack", Ack.decode(payload)))
            elif channel == "cmd":
                obj = decode_json(payload, "cmd")
                if obj.get("cmd") == "resend":
                    self._events.put(_Event("cmd", ResendRequest.decode(obj)))
                else:
                    log.warning("site %s: unknown command %r ignored", self.site_id,
                                obj.get("cmd"))
            elif channel == "tickets":
                self._events.put(_Event("tickets", decode_json(payload, "tickets")))
        except ProtocolError as exc:
            log.error("site %s: ignoring malformed %s message: %s", self.site_id, channel, exc)

    # -- the outbox thread ---------------------------------------------------------------------

    def _run(self) -> None:
        store = self._store_factory()
        try:
            self._loop(store)
        except Exception as exc:  # keep the reason visible; the gate itself is unaffected
            self.last_error = f"outbox stopped: {exc!r}"
            log.exception("site %s: outbox thread failed", self.site_id)
            raise
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()

    def _loop(self, store: OutboxStore) -> None:
        raw = store.get_meta(ACKED_META_KEY)
        self.acked_seq = int(raw) if raw is not None else -1
        self.cosigned_checkpoint = store.get_meta(COSIGNED_META_KEY)
        next_seq = self.acked_seq + 1
        inflight_end: int | None = None  # last seq of the batch awaiting its ack
        sent_at = 0.0
        last_checkpoint = -1.0
        checkpoint_sent_size = -1
        last_heartbeat = 0.0
        while not self._stop.is_set():
            try:
                event: _Event | None = self._events.get(timeout=self._poll)
            except queue.Empty:
                event = None
            while event is not None:
                if event.kind == "connected":
                    self._connected.set()
                    self._publish_online(store)
                    last_heartbeat = self._clock()
                    next_seq, inflight_end = self.acked_seq + 1, None
                    checkpoint_sent_size = -1
                elif event.kind == "disconnected":
                    inflight_end = None
                elif event.kind == "ack":
                    ack: Ack = event.data
                    if ack.seq > self.acked_seq:
                        self.acked_seq = ack.seq
                        store.set_meta(ACKED_META_KEY, str(ack.seq))
                    if ack.checkpoint and ack.checkpoint != self.cosigned_checkpoint:
                        self.cosigned_checkpoint = ack.checkpoint
                        store.set_meta(COSIGNED_META_KEY, ack.checkpoint)
                    if inflight_end is not None and self.acked_seq >= inflight_end:
                        inflight_end = None
                    next_seq = max(next_seq, self.acked_seq + 1)
                elif event.kind == "cmd":
                    req: ResendRequest = event.data
                    log.info("site %s: central asks to resend from %d", self.site_id, req.start)
                    next_seq, inflight_end = req.start, None
                elif event.kind == "tickets" and self._on_tickets is not None:
                    try:
                        self._on_tickets(event.data)
                    except Exception:
                        log.exception("site %s: tickets callback failed", self.site_id)
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    event = None
            if not self._connected.is_set():
                continue
            now = self._clock()
            changed = self._gate_status is not None and self._gate_now() != self._gate_sent
            if changed or now - last_heartbeat >= self._heartbeat_interval:
                self._publish_online(store)
                last_heartbeat = now
            if inflight_end is not None and now - sent_at > self._ack_timeout:
                log.warning("site %s: no ack for seq %d within %.0f s; resending from %d",
                            self.site_id, inflight_end, self._ack_timeout, self.acked_seq + 1)
                next_seq, inflight_end = self.acked_seq + 1, None
            size = store.size
            if inflight_end is None and next_seq < size:
                stop = min(size, next_seq + self._batch_size)
                entries: list[SignedEntry] = list(store.iter_entries(next_seq, stop))
                if entries:
                    batch = LedgerBatch(self.site_id, next_seq, tuple(entries))
                    self._client.publish(topic(self.site_id, "ledger"), batch.encode(), qos=1)
                    self.batches_sent += 1
                    inflight_end = next_seq + len(entries) - 1
                    next_seq = inflight_end + 1
                    sent_at = now
            caught_up = inflight_end is None and self.acked_seq + 1 >= size
            if caught_up:
                self.caught_up.set()
            else:
                self.caught_up.clear()
            if (
                caught_up
                and self._can_checkpoint
                and size > 0
                and checkpoint_sent_size < size
                and now - last_checkpoint >= self._checkpoint_interval
            ):
                note = store.sign_checkpoint()
                self._client.publish(topic(self.site_id, "checkpoint"),
                                     CheckpointMessage(self.site_id, note).encode(), qos=1)
                checkpoint_sent_size, last_checkpoint = size, now

    def _gate_now(self) -> dict[str, Any] | None:
        if self._gate_status is None:
            return None
        try:
            return self._gate_status()
        except Exception:  # the heartbeat must go out even if the gate's view is unreadable
            log.exception("site %s: gate status unavailable", self.site_id)
            return None

    def _publish_online(self, store: OutboxStore) -> None:
        gate = self._gate_now()
        self._gate_sent = gate
        self._client.publish(
            topic(self.site_id, "status"),
            Status("online", _now(), self.acked_seq, store.size, gate).encode(),
            qos=1, retain=True,
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
