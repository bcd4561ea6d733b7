"""The ingest worker: MQTT in, verified rows in PostgreSQL, acks out.

``Ingestor.handle(topic, payload)`` does the work for one message — parse, lock the site, verify
(central.ingest.core / central.witness), store, commit — and returns the replies to publish, so
it is tested against a real database without a broker. ``run_ingest`` wraps it in a paho-mqtt
client on the MQTT v5 shared subscription ``$share/<group>/coalgate/v1/sites/+/…``: any number
of workers split the load, and per-site serialisation happens in the database (the site_state
row lock), never in a process.

Acks are published only after the commit. A worker killed mid-batch loses nothing: the
transaction rolls back, no ack goes out, and the edge sends the batch again.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import psycopg

from central import db
from central.ingest import store
from central.ingest.core import AlarmDraft, SiteView, VerifiedEntry, check_batch
from central.ingest.settings import IngestSettings
from central.witness import SignerKey, load_or_create_witness_key, witness_checkpoint
from edge_agent.sync.mqtt import connect_async, make_client
from edge_agent.sync.protocol import (
    TOPIC_ROOT,
    Ack,
    CheckpointMessage,
    LedgerBatch,
    ProtocolError,
    ResendRequest,
    Status,
    site_from_topic,
    topic,
)
from ledger.errors import KeyFormatError
from ledger.keys import VerifierKey

if TYPE_CHECKING:
    from central.settings import RuleSettings

__all__ = ["Ingestor", "Reply", "run_ingest", "IngestStats"]

log = logging.getLogger(__name__)

Reply = tuple[str, bytes]
_LEAF_MONTH = re.compile(rb'"ts":"(\d{4})-(\d{2})-')
Projector = Callable[[Any, str, list[VerifiedEntry]], None]


@dataclass
class IngestStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    malformed: int = 0
    resends: int = 0
    checkpoints: int = 0
    connects: int = 0  # successful MQTT connects (each one re-subscribes)


_MISSING = object()


class Ingestor:
    """Handles one message at a time on its own database connection (not thread-safe).

    ``rules`` is the deployment's ``[rules]`` section (central.settings.RuleSettings); the
    default projector applies it. ``None`` means the built-in rule defaults.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        witness_key: SignerKey,
        *,
        clock: Callable[[], float] = time.time,
        projector: Projector | None | object = _MISSING,
        rules: RuleSettings | None = None,
    ) -> None:
        self.conn = conn
        self.witness_key = witness_key
        self.clock = clock
        self.stats = IngestStats()
        self._verifiers: dict[str, VerifierKey] = {}
        self._months: set[datetime] = set()
        self._projector: Projector | None = (
            _load_projector(rules) if projector is _MISSING
            else projector  # type: ignore[assignment]
        )

    # -- entry point -------------------------------------------------------------------------

    def handle(self, topic_name: str, payload: bytes, *, retained: bool = False) -> list[Reply]:
        """Process one MQTT message; returns replies to publish (after the commit)."""
        try:
            site, channel = site_from_topic(topic_name)
        except ProtocolError as exc:
            log.error("ignoring message: %s", store.clip(exc))
            self.stats.malformed += 1
            return []
        try:
            if channel == "ledger":
                return self._ledger(site, topic_name, payload)
            if channel == "checkpoint":
                return self._checkpoint(site, topic_name, payload)
            if channel == "status":
                return self._status(site, topic_name, payload, retained)
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.error("malformed %s message on %s: %s", channel, store.clip(topic_name, 200),
                      store.clip(exc))
            self._reject(site, topic_name, "malformed", str(exc), payload)
            return []
        return []

    # -- channels ----------------------------------------------------------------------------

    def _ledger(self, site: str, topic_name: str, payload: bytes) -> list[Reply]:
        batch = LedgerBatch.decode(payload)
        self.stats.batches += 1
        self._ensure_partitions(batch)
        with self.conn.transaction(), self.conn.cursor() as cur:
            row = store.lock_site(cur, site)
            if row is None:
                self._reject_in(cur, site, topic_name, "unknown_site",
                                f"site {site!r} is not enrolled; enrol it first", payload)
                return []
            view = self._view(row)
            last = batch.start + len(batch.entries) - 1
            known = store.known_hashes(cur, site, batch.start, min(last, row.verified_seq))
            outcome = check_batch(view, site, batch.entries, known)
            if batch.site != site and outcome.rejected is None and outcome.accepted:
                # The envelope lies about the site although the entries match the topic:
                # entries decide; note it.
                log.warning("batch envelope names site %r on topic of %r",
                            store.clip(batch.site, 100), site)
            store.store_entries(cur, site, outcome.accepted)
            if outcome.accepted and self._projector is not None:
                self._project(cur, site, outcome.accepted)
            for alarm in outcome.alarms:
                self._alarm(cur, site, alarm)
            if outcome.rejected is not None:
                reason, detail = outcome.rejected
                log.error("site %s: refused entry: %s", site, store.clip(detail))
                store.record_reject(cur, site, topic_name, reason, detail, payload)
                self.stats.rejected += 1
            verified = outcome.verified_seq_after
            if verified is None:
                verified = row.verified_seq
            cosigned = store.get_checkpoint(cur, site, row.checkpoint_size)
        # Committed: now it is safe to acknowledge.
        self.stats.stored += len(outcome.accepted)
        self.stats.duplicates += outcome.duplicates
        replies: list[Reply] = [
            (topic(site, "ack"), Ack(verified, cosigned.cosigned if cosigned else None).encode())
        ]
        if outcome.resend_from is not None:
            self.stats.resends += 1
            replies.append((topic(site, "cmd"), ResendRequest(outcome.resend_from).encode()))
        return replies

    def _checkpoint(self, site: str, topic_name: str, payload: bytes) -> list[Reply]:
        msg = CheckpointMessage.decode(payload)
        with self.conn.transaction(), self.conn.cursor() as cur:
            row = store.lock_site(cur, site)
            if row is None:
                self._reject_in(cur, site, topic_name, "unknown_site",
                                f"site {site!r} is not enrolled; enrol it first", payload)
                return []
            view = self._view(row)
            nodes = store.DbNodes(cur, site)
            latest = store.get_checkpoint(cur, site, row.checkpoint_size)
            decision = witness_checkpoint(
                msg.note,
                site=site,
                verifier=view.verifier,
                witness_key=self.witness_key,
                verified_size=row.verified_seq + 1,
                latest=latest,
                same_size=None,
                node=nodes,
                now=int(self.clock()),
            )
            if decision.checkpoint is not None and decision.status == "cosigned":
                same = store.get_checkpoint(cur, site, decision.checkpoint.size)
                if same is not None and same.root == decision.checkpoint.root_hash:
                    decision_cosigned = same.cosigned
                else:
                    assert decision.cosigned is not None
                    store.store_checkpoint(cur, site, decision.checkpoint.size,
                                           decision.checkpoint.root_hash, msg.note,
                                           decision.cosigned)
                    decision_cosigned = decision.cosigned
                    self.stats.checkpoints += 1
            elif decision.status == "refused":
                assert decision.alarm is not None
                self._alarm(cur, site, decision.alarm)
                store.record_reject(cur, site, topic_name, str(decision.alarm.detail["reason"]),
                                    decision.message, payload)
                self.stats.rejected += 1
                log.error("site %s: %s", site, store.clip(decision.message))
                return []
            else:  # pending: the edge sends it again once its entries are acked
                log.info("site %s: %s", site, store.clip(decision.message))
                return []
        return [(topic(site, "ack"), Ack(row.verified_seq, decision_cosigned).encode())]

    def _status(self, site: str, topic_name: str, payload: bytes, retained: bool) -> list[Reply]:
        if not payload:  # a retained status being cleared
            return []
        status = Status.decode(payload)
        with self.conn.transaction(), self.conn.cursor() as cur:
            if not store.update_status(cur, site, status.as_dict(), fresh=not retained):
                log.warning("status from unenrolled site %r ignored", site)
        return []

    # -- helpers -----------------------------------------------------------------------------

    def _project(self, cur: psycopg.Cursor[Any], site: str, entries: list[VerifiedEntry]) -> None:
        """Run projections in a savepoint: a rule bug must never block the verified log."""
        assert self._projector is not None
        try:
            with self.conn.transaction():
                self._projector(cur, site, entries)
        except Exception as exc:
            log.exception("site %s: projections failed for seq %d–%d; entries stored anyway",
                          site, entries[0].seq, entries[-1].seq)
            self._alarm(cur, site, AlarmDraft(
                "projection_failed", "warning", entries[0].seq,
                {"message": f"projections failed: {exc}", "last_seq": entries[-1].seq},
            ))

    def _view(self, row: store.SiteRow) -> SiteView:
        verifier = self._verifiers.get(row.verifier_key)
        if verifier is None:
            try:
                verifier = VerifierKey.from_text(row.verifier_key)
            except KeyFormatError as exc:
                raise RuntimeError(f"site {row.site}: enrolled key is unusable: {exc}") from exc
            self._verifiers[row.verifier_key] = verifier
        return SiteView(row.site, verifier, row.verified_seq, row.head_hash)

    def _alarm(self, cur: psycopg.Cursor[Any], site: str, alarm: AlarmDraft) -> None:
        if store.raise_alarm(cur, site, alarm):
            log.warning("site %s: alarm %s (seq %s): %s", site, alarm.code, alarm.seq,
                        store.clip(alarm.detail.get("message")))

    def _reject(self, site: str | None, topic_name: str, reason: str, detail: str,
                payload: bytes) -> None:
        try:
            with self.conn.transaction(), self.conn.cursor() as cur:
                store.record_reject(cur, site, topic_name, reason, detail, payload)
        except psycopg.Error as exc:
            log.error("could not record rejected message: %s", store.clip(exc))

    def _reject_in(self, cur: psycopg.Cursor[Any], site: str, topic_name: str, reason: str,
                   detail: str, payload: bytes) -> None:
        log.error("%s: %s", store.clip(topic_name, 200), store.clip(detail))
        self.stats.rejected += 1
        store.record_reject(cur, None, topic_name, reason, detail, payload)

    def _ensure_partitions(self, batch: LedgerBatch) -> None:
        """Create monthly partitions outside the entry transaction (DDL locks the parent).

        Only a hint: the month is read from the leaf text without a full parse (check_batch
        validates everything later); a row whose month has no partition lands in the default.
        """
        months: set[datetime] = set()
        for se in batch.entries:
            m = _LEAF_MONTH.search(se.leaf)
            if m:
                try:
                    months.add(datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC))
                except ValueError:
                    continue
        for month in months - self._months:
            with self.conn.transaction():
                self.conn.execute("SELECT coalgate_ensure_entries_partition(%s)", (month,))
            self._months.add(month)


def _load_projector(rules: RuleSettings | None = None) -> Projector | None:
    try:
        from central import projections  # type: ignore[attr-defined,unused-ignore]
    except ModuleNotFoundError as exc:
        if exc.name != "central.projections":
            raise
        log.warning("central.projections is not installed: entries are stored without projections")
        return None
    # Without rules= the projections fall back to built-in defaults and ignore [rules].
    return partial(projections.apply, rules=rules)


# -- MQTT ------------------------------------------------------------------------------------


def subscriptions(group: str, *, shared_subscriptions: bool = True) -> list[tuple[str, int]]:
    """The worker's subscriptions; without MQTT v5 (``shared_subscriptions=False``) plain ones.

    Without ``$share`` every worker receives every message, so a 3.1.1 broker (the demo's
    in-process amqtt) is meant for one worker. Two would still be correct — the site row lock
    and (site, seq) idempotency make the second one a duplicate — but do the work twice.
    """
    if not shared_subscriptions:
        plain = f"{TOPIC_ROOT}/+"
        return [(f"{plain}/ledger", 1), (f"{plain}/checkpoint", 1), (f"{plain}/status", 1)]
    shared = f"$share/{group}/{TOPIC_ROOT}/+"
    # Retained status messages are never delivered on shared subscriptions (MQTT 5 §4.8.2),
    # so every worker subscribes to status directly; applying one twice is harmless.
    return [(f"{shared}/ledger", 1), (f"{shared}/checkpoint", 1), (f"{TOPIC_ROOT}/+/status", 1)]


def run_ingest(
    settings: IngestSettings,
    stop: threading.Event,
    *,
    ready: threading.Event | None = None,
    url: str | None = None,
    rules: RuleSettings | None = None,
) -> IngestStats:
    """Run one ingest worker until ``stop`` is set; returns its counters.

    ``rules``: the ``[rules]`` section of the central settings (default: built-in rules).
    paho reconnects on its own after a broker outage (back-off bounded by
    ``settings.mqtt.reconnect_min_s``/``reconnect_max_s``); every connect subscribes again,
    because the worker's sessions are clean (nothing is queued for it while it is away: the
    gates resend whatever was not acked).
    """
    dsn = url or db.resolve_url(settings.database)
    conn = db.connect(dsn)
    db.migrate(conn)
    witness_key = load_or_create_witness_key(settings.witness_key_file, settings.witness_name)
    ingestor = Ingestor(conn, witness_key, rules=rules)
    client_id = settings.client_id or f"ingest-{socket.gethostname()}-{os.getpid()}-{id(stop):x}"
    client = make_client(settings.mqtt, client_id)
    lock = threading.Lock()

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("MQTT connect to %s:%s refused: %s", settings.mqtt.host,
                      settings.mqtt.port, reason)
            return
        c.subscribe(subscriptions(settings.share_group,
                                  shared_subscriptions=settings.mqtt.shared_subscriptions))
        ingestor.stats.connects += 1
        log.info("ingest worker %s connected and subscribed (connect #%d)", client_id,
                 ingestor.stats.connects)
        if ready is not None:
            ready.set()

    def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            try:
                replies = ingestor.handle(msg.topic, bytes(msg.payload), retained=bool(msg.retain))
            except psycopg.OperationalError as exc:
                log.error("database unavailable (%s); reconnecting, the edge will resend", exc)
                _reconnect(ingestor, dsn)
                return
            except Exception:
                log.exception("unexpected error handling %s; message dropped, ingest continues",
                              store.clip(msg.topic, 200))
                if ingestor.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    ingestor.conn.rollback()
                return
        for reply_topic, body in replies:
            c.publish(reply_topic, body, qos=1)

    client.on_connect = on_connect
    client.on_message = on_message
    connect_async(client, settings.mqtt)
    client.loop_start()
    try:
        # Rejected messages are kept for forensics, but not for ever (retention settings).
        while True:
            with lock:
                _prune_rejected(ingestor, settings)
            if stop.wait(settings.rejected_prune_s):
                break
    finally:
        client.disconnect()
        client.loop_stop()
        conn.close()
    return ingestor.stats


def _prune_rejected(ingestor: Ingestor, settings: IngestSettings) -> None:
    try:
        with ingestor.conn.transaction(), ingestor.conn.cursor() as cur:
            gone = store.prune_rejected(cur, datetime.now(UTC),
                                        keep_days=settings.rejected_keep_days,
                                        keep_max=settings.rejected_keep_max)
    except psycopg.Error as exc:
        log.error("could not clean up rejected messages: %s (next try in %s s)",
                  store.clip(exc), settings.rejected_prune_s)
        return
    if gone:
        log.info("deleted %d rejected messages (older than %d days or beyond the newest %d)",
                 gone, settings.rejected_keep_days, settings.rejected_keep_max)


def _reconnect(ingestor: Ingestor, dsn: str) -> None:
    try:
        ingestor.conn.close()
    except psycopg.Error:
        pass
    for attempt in range(5):
        try:
            ingestor.conn = db.connect(dsn)
            return
        except db.DatabaseError as exc:
            log.error("reconnect %d failed: %s", attempt + 1, exc)
            time.sleep(1)
