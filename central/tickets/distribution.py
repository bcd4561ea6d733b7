"""Distribution of tickets, revocations, uses and the trust list to the gates over MQTT.

Changes are queued in ``ticket_outbox`` inside the transaction that makes them (issue, void,
an ingested use, a new trust list), one row per **gate**: a delta about a ticket of loading
site X goes to every gate whose ``sites.loading_site`` is X (:func:`enqueue_loading_site`),
each on its own topic, so broker ACLs stay per gate (a gate reads only its own ``tickets``).
:class:`TicketPublisher` publishes queued deltas to ``coalgate/v1/sites/<gate>/tickets`` at
QoS 1 and marks each one published only after the broker's PUBACK, so a crash between the two
resends (the gate applies deltas idempotently) and never drops. Several publishers may run at
once: rows are claimed with SKIP LOCKED.

Delivery to a gate that is offline relies on its **persistent MQTT session**: the gate
connects with a fixed client id, ``clean_start=False`` and a session expiry interval
(edge_agent.sync.mqtt.session_properties, GATE_SESSION_EXPIRY_S), so the broker queues QoS 1
deltas while it is away. Brokers bound that queue (Mosquitto: ``max_queued_messages``, 1000 by
default) and drop the excess, so the publisher also sends each gate a **snapshot** — trust
list, and for the gate's loading site the revocations and uses of unexpired tickets and the
open tickets — whenever the gate comes back online (``site_state.online``, which the ingest
keeps from the gate's retained status and last will). Deltas are idempotent, so a
snapshot after a complete queue does no harm.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from psycopg.types.json import Jsonb

from edge_agent.sync.mqtt import GATE_SESSION_EXPIRY_S, MqttSettings, make_client
from edge_agent.sync.mqtt import session_properties as gate_connect_properties
from edge_agent.sync.protocol import PROTOCOL_VERSION, topic
from ledger.trust import format_time

__all__ = [
    "GATE_SESSION_EXPIRY_S",
    "enqueue",
    "enqueue_loading_site",
    "enqueue_all_sites",
    "snapshot",
    "gate_connect_properties",
    "TicketPublisher",
    "PublishError",
]

log = logging.getLogger(__name__)

# GATE_SESSION_EXPIRY_S and gate_connect_properties (= session_properties) are the gate's own
# (edge_agent.sync.mqtt), re-exported here: the central and the gate must agree on them.


class PublishError(Exception):
    """The broker did not acknowledge a delta in time (it stays queued and is retried)."""


def enqueue(conn: psycopg.Connection[Any] | psycopg.Cursor[Any], site: str,
            payload: Mapping[str, Any]) -> None:
    """Queue one delta for one gate (no commit: part of the caller's transaction)."""
    conn.execute("INSERT INTO ticket_outbox (site, payload) VALUES (%s, %s)",
                 (site, Jsonb(dict(payload))))


def enqueue_loading_site(
    conn: psycopg.Connection[Any] | psycopg.Cursor[Any], loading_site: str,
    payload: Mapping[str, Any], *, exclude: str | None = None,
) -> None:
    """Queue one delta for every gate that serves ``loading_site`` (except ``exclude``, the
    gate the news came from); each gate gets its own row and, so, its own topic."""
    conn.execute(
        "INSERT INTO ticket_outbox (site, payload) SELECT id, %s FROM sites"
        " WHERE loading_site = %s AND id IS DISTINCT FROM %s ORDER BY id",
        (Jsonb(dict(payload)), loading_site, exclude),
    )


def enqueue_all_sites(conn: psycopg.Connection[Any], payload: Mapping[str, Any]) -> None:
    conn.execute("INSERT INTO ticket_outbox (site, payload) SELECT id, %s FROM sites",
                 (Jsonb(dict(payload)),))


def snapshot(conn: psycopg.Connection[Any], site: str, *, now: datetime) -> int:
    """Queue everything gate ``site`` must hold: the trust list, and for its loading site the
    revocations of tickets not yet expired, the open tickets, and uses at other gates.
    Returns how many deltas were queued."""
    n = 0
    row = conn.execute("SELECT loading_site FROM sites WHERE id = %s", (site,)).fetchone()
    loading_site = row[0] if row is not None else site
    row = conn.execute(
        "SELECT note FROM ticket_trust_lists ORDER BY serial DESC LIMIT 1").fetchone()
    if row is not None:
        enqueue(conn, site, {"type": "trust", "note": row[0]})
        n += 1
    for ticket_id, at, reason in conn.execute(
        "SELECT id, voided_at, void_reason FROM tickets WHERE site = %s"
        " AND voided_at IS NOT NULL AND valid_to > %s ORDER BY voided_at",
        (loading_site, now),
    ).fetchall():
        enqueue(conn, site, {"type": "revoked", "ticket_id": ticket_id,
                             "at": format_time(at), "reason": reason or ""})
        n += 1
    for (text,) in conn.execute(
        "SELECT qr FROM tickets t WHERE site = %s AND voided_at IS NULL AND valid_to > %s"
        " AND NOT EXISTS (SELECT 1 FROM ticket_uses u WHERE u.ticket_id = t.id)"
        " ORDER BY issued_at",
        (loading_site, now),
    ).fetchall():
        enqueue(conn, site, {"type": "issued", "ticket": text})
        n += 1
    # Uses at the mine's other gates: this gate must refuse those tickets too, even offline.
    for ticket_id, use_site, seq, at in conn.execute(
        "SELECT u.ticket_id, u.site, u.seq, u.ts FROM ticket_uses u JOIN tickets t"
        " ON t.id = u.ticket_id WHERE t.site = %s AND t.valid_to > %s AND u.site <> %s"
        " ORDER BY u.ts, u.site, u.seq",
        (loading_site, now, site),
    ).fetchall():
        enqueue(conn, site, {"type": "used", "ticket_id": ticket_id, "site": use_site,
                             "seq": seq, "at": format_time(at)})
        n += 1
    return n


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TicketPublisher:
    """Publishes queued ticket deltas to the gates; run one or more per deployment.

    ``run_once()`` does one pass (snapshots for gates back online, then queued deltas) and is
    what tests and :meth:`run` call.
    """

    def __init__(
        self,
        url: str,
        mqtt_settings: MqttSettings,
        *,
        client_id: str = "central-tickets",
        batch: int = 500,
        puback_timeout: float = 10.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.url = url
        self.batch = batch
        self.puback_timeout = puback_timeout
        self.clock = clock
        self.published = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._connected = threading.Event()
        self._client = make_client(mqtt_settings, client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._settings = mqtt_settings

    # -- MQTT ---------------------------------------------------------------------------------

    def _on_connect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any) -> None:
        if reason.is_failure:
            log.error("ticket publisher: broker refused the connection: %s", reason)
            return
        self._connected.set()

    def _on_disconnect(self, c: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       props: Any) -> None:
        self._connected.clear()

    def start(self, timeout: float = 10.0) -> None:
        self._conn = psycopg.connect(self.url, connect_timeout=10)
        self._client.connect_async(self._settings.host, self._settings.port,
                                   self._settings.keepalive)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            log.warning("ticket publisher: broker %s:%d not reachable yet; deltas stay queued",
                        self._settings.host, self._settings.port)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> TicketPublisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # -- one pass -------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Queue snapshots for gates back online, then publish queued deltas. Returns how many
        deltas the broker acknowledged."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("TicketPublisher.start() was not called")
        self.sync_sites(conn, now=self.clock())
        if not self.connected:
            return 0
        sent = 0
        while True:
            n = self._publish_batch(conn)
            sent += n
            if n < self.batch:
                return sent

    def sync_sites(self, conn: psycopg.Connection[Any], *, now: datetime) -> int:
        """Snapshot every gate that is online and not yet synced since it (re)connected; mark
        offline gates for a snapshot when they return."""
        queued = 0
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('ticket_site_sync'))")
            rows = conn.execute(
                "SELECT s.id, coalesce(st.online, false), coalesce(ts.synced, false)"
                " FROM sites s LEFT JOIN site_state st ON st.site = s.id"
                " LEFT JOIN ticket_site_sync ts ON ts.site = s.id ORDER BY s.id"
            ).fetchall()
            for site, online, synced in rows:
                if online and not synced:
                    queued += snapshot(conn, site, now=now)
                if online != synced:
                    conn.execute(
                        "INSERT INTO ticket_site_sync (site, synced) VALUES (%s, %s)"
                        " ON CONFLICT (site) DO UPDATE SET synced = EXCLUDED.synced",
                        (site, online),
                    )
        return queued

    def _publish_batch(self, conn: psycopg.Connection[Any]) -> int:
        with conn.transaction():
            rows = conn.execute(
                "SELECT id, site, payload FROM ticket_outbox WHERE published_at IS NULL"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.batch,),
            ).fetchall()
            infos: list[tuple[int, mqtt.MQTTMessageInfo]] = []
            for row_id, site, payload in rows:
                # "v": the sync protocol version every payload carries (docs/protocol.md);
                # the gate's outbox drops messages without it.
                body = json.dumps({"v": PROTOCOL_VERSION, **payload}, ensure_ascii=False,
                                  separators=(",", ":"))
                info = self._client.publish(topic(site, "tickets"), body, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                infos.append((row_id, info))
            done: list[int] = []
            for row_id, info in infos:
                try:
                    info.wait_for_publish(self.puback_timeout)
                except (RuntimeError, ValueError):
                    break
                if not info.is_published():
                    break
                done.append(row_id)
            if done:
                conn.execute(
                    "UPDATE ticket_outbox SET published_at = now() WHERE id = ANY(%s)", (done,)
                )
        self.published += len(done)
        if len(done) < len(rows):
            log.warning("ticket publisher: %d of %d deltas not acknowledged; will retry",
                        len(rows) - len(done), len(rows))
        return len(done)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Publish until ``stop`` is set; database or broker trouble is logged and retried."""
        while not stop.is_set():
            try:
                self.run_once()
            except psycopg.Error:
                log.exception("ticket publisher: database error; retrying")
                self._reconnect_db()
            stop.wait(interval)

    def _reconnect_db(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
            self._conn = psycopg.connect(self.url, connect_timeout=10)
        except psycopg.Error:
            log.exception("ticket publisher: cannot reconnect to the database")

    def prune(self, older_than_days: int = 40) -> int:
        """Delete deltas published more than ``older_than_days`` ago."""
        assert self._conn is not None
        with self._conn.transaction():
            cur = self._conn.execute(
                "DELETE FROM ticket_outbox WHERE published_at < now() - make_interval(days => %s)",
                (older_than_days,),
            )
        return cur.rowcount
