"""Ingestor against a real PostgreSQL (no broker): storage, idempotency, alarms, witness."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from central.api.schemas import SiteIn
from central.db import migrate
from central.ingest import store as db_store
from central.ingest.worker import Ingestor
from central.sites import enrol_site
from edge_agent.sync.protocol import Ack, CheckpointMessage, LedgerBatch, topic
from ledger.checkpoint import Checkpoint, sign_checkpoint, verify_cosignature
from ledger.entry import SignedEntry
from ledger.keys import SignerKey
from ledger.merkle import inclusion_proof_at, root_at, verify_inclusion
from ledger.store import LedgerStore

SITE = "mine-a"


class Env:
    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.key = SignerKey.generate(SITE)
        self.witness = SignerKey.generate("central-witness")
        self.ledger = LedgerStore.open(tmp / "gate.db", site=SITE, signer=self.key)
        self.conn = psycopg.connect(url)
        enrol_site(self.conn, SiteIn(id=SITE, enterprise="E1", name="Mine A",
                                     verifier_key=self.key.verifier.to_text(), lat=38.3, lon=109.7))
        self.ingestor = Ingestor(self.conn, self.witness, clock=lambda: 1_800_000_000.0,
                                 projector=None)

    def append(self, n: int) -> list[SignedEntry]:
        return self.ledger.append_batch(
            [("weighing", {"txn": f"t{i}", "weight_kg": 30000 + i}) for i in range(n)]
        )

    def send(self, entries: list[SignedEntry], site: str = SITE,
             ingestor: Ingestor | None = None) -> list[tuple[str, bytes]]:
        batch = LedgerBatch(site, entries[0].entry.seq, tuple(entries))
        return (ingestor or self.ingestor).handle(topic(site, "ledger"), batch.encode())

    def q(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as c:
            return c.execute(sql, args).fetchall()

    def alarms(self) -> list[str]:
        return [r[0] for r in self.q("SELECT code FROM alarms ORDER BY id")]


@pytest.fixture
def env(pg_url: str, tmp_path: Path) -> Any:
    e = Env(pg_url, tmp_path)
    yield e
    e.conn.close()
    e.ledger.close()


def ack_of(replies: list[tuple[str, bytes]]) -> Ack:
    acks = [Ack.decode(p) for t, p in replies if t.endswith("/ack")]
    assert len(acks) == 1
    return acks[0]


def test_batches_are_stored_once_in_order_and_acked(env: Env) -> None:
    entries = env.append(25)
    assert ack_of(env.send(entries[:10])).seq == 9
    assert ack_of(env.send(entries[5:25])).seq == 24  # overlap: resend after a lost ack
    assert ack_of(env.send(entries[:10])).seq == 24  # replay of an old batch
    rows = env.q("SELECT seq, hash FROM entries WHERE site = %s ORDER BY seq", SITE)
    assert [r[0] for r in rows] == list(range(25))
    assert [bytes(r[1]) for r in rows] == [se.hash for se in entries]
    assert env.alarms() == []
    assert env.ingestor.stats.duplicates == 15
    state = env.q("SELECT verified_seq, head_hash FROM site_state WHERE site = %s", SITE)[0]
    assert state[0] == 24 and bytes(state[1]) == entries[-1].hash


def test_merkle_nodes_give_the_gate_root_and_proofs(env: Env) -> None:
    entries = env.append(37)
    env.send(entries[:13])
    env.send(entries[13:])
    with psycopg.connect(env.url) as c, c.cursor() as cur:
        nodes = db_store.DbNodes(cur, SITE)
        assert root_at(37, nodes) == env.ledger.root()
        assert root_at(20, nodes) == env.ledger.root(20)
        proof = inclusion_proof_at(17, 37, nodes)
        verify_inclusion(17, 37, entries[17].hash, proof, env.ledger.root())


def test_gap_asks_for_resend_and_stores_nothing_beyond(env: Env) -> None:
    entries = env.append(10)
    env.send(entries[:3])
    replies = env.send(entries[6:])
    assert ack_of(replies).seq == 2
    cmds = [json.loads(p) for t, p in replies if t.endswith("/cmd")]
    assert cmds == [{"v": 1, "cmd": "resend", "from": 3}]
    assert env.q("SELECT max(seq) FROM entries")[0][0] == 2


def test_forged_entry_is_refused_alarmed_and_never_stored(env: Env) -> None:
    entries = env.append(3)
    impostor_dir = Path(env.ledger.path).parent / "impostor.db"
    with LedgerStore.open(impostor_dir, site=SITE, signer=SignerKey.generate(SITE)) as fake:
        forged = fake.append_batch([("weighing", {"txn": f"f{i}"}) for i in range(5)])
    assert ack_of(env.send(forged)).seq == -1
    assert env.alarms() == ["tamper_signature"]
    assert env.q("SELECT count(*) FROM entries")[0][0] == 0
    assert env.q("SELECT reason FROM rejected_messages")[0][0] == "bad_signature"
    env.send(forged)  # the same forgery again: no second open alarm for the same seq
    assert env.alarms() == ["tamper_signature"]
    assert ack_of(env.send(entries)).seq == 2  # the genuine gate is unaffected


def test_fork_raises_tamper_fork(env: Env, tmp_path: Path) -> None:
    entries = env.append(4)
    env.send(entries)
    with LedgerStore.open(tmp_path / "fork.db", site=SITE, signer=env.key) as other:
        fork = other.append_batch([("weighing", {"txn": "other"}) for _ in range(4)])
    assert ack_of(env.send(fork)).seq == 3
    assert env.alarms() == ["tamper_fork"]


def test_entries_of_another_site_on_this_topic_are_refused(env: Env, tmp_path: Path) -> None:
    b_key = SignerKey.generate("mine-b")
    with psycopg.connect(env.url) as c:
        enrol_site(c, SiteIn(id="mine-b", enterprise="E2", name="Mine B",
                             verifier_key=b_key.verifier.to_text()))
    with LedgerStore.open(tmp_path / "b.db", site="mine-b", signer=b_key) as b:
        theirs = b.append_batch([("weighing", {"txn": "b"})])
    env.send(theirs, site=SITE)
    assert env.alarms() == ["tamper_topic"]
    assert env.q("SELECT count(*) FROM entries")[0][0] == 0


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"{}", b'{"v":1}', b'{"v":1,"site":"mine-a","from":0,"entries":[1]}',
     b"\x00" * 100, json.dumps({"v": 1, "site": SITE, "from": 0, "entries": "x"}).encode()],
)
def test_malformed_payloads_are_logged_and_ingest_continues(
    env: Env, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    assert env.ingestor.handle(topic(SITE, "ledger"), payload) == []
    assert "malformed ledger message" in caplog.text
    assert env.q("SELECT reason FROM rejected_messages")[0][0] == "malformed"
    assert env.ingestor.handle("coalgate/v1/sites/x/y/z", b"{}") == []
    entries = env.append(2)
    assert ack_of(env.send(entries)).seq == 1


def test_unknown_site_is_refused(env: Env, tmp_path: Path) -> None:
    k = SignerKey.generate("ghost")
    with LedgerStore.open(tmp_path / "g.db", site="ghost", signer=k) as g:
        entries = g.append_batch([("weighing", {"txn": "g"})])
    assert env.send(entries, site="ghost") == []
    assert env.q("SELECT reason FROM rejected_messages")[0][0] == "unknown_site"


def test_checkpoint_is_verified_and_cosigned(env: Env) -> None:
    entries = env.append(9)
    note_early = env.ledger.sign_checkpoint()
    h = env.ingestor.handle
    # Before its entries arrive the checkpoint is pending: no ack, nothing stored.
    assert h(topic(SITE, "checkpoint"), CheckpointMessage(SITE, note_early).encode()) == []
    env.send(entries)
    ack = ack_of(h(topic(SITE, "checkpoint"), CheckpointMessage(SITE, note_early).encode()))
    assert ack.seq == 8 and ack.checkpoint is not None
    assert verify_cosignature(ack.checkpoint, env.witness.verifier) == 1_800_000_000
    more = env.append(5)
    env.send(more)
    note2 = env.ledger.sign_checkpoint()
    ack2 = ack_of(h(topic(SITE, "checkpoint"), CheckpointMessage(SITE, note2).encode()))
    assert ack2.checkpoint is not None and "\n14\n" in ack2.checkpoint
    # later ledger acks carry the latest cosigned checkpoint
    assert ack_of(env.send(more)).checkpoint == ack2.checkpoint
    assert env.alarms() == []


def test_checkpoint_with_a_root_the_log_does_not_have_is_tamper(env: Env) -> None:
    entries = env.append(6)
    env.send(entries)
    lie = sign_checkpoint(Checkpoint(f"coalgate/{SITE}", 6, bytes(32)), env.key)
    assert env.ingestor.handle(topic(SITE, "checkpoint"),
                               CheckpointMessage(SITE, lie).encode()) == []
    assert env.alarms() == ["tamper_checkpoint"]
    assert env.q("SELECT count(*) FROM checkpoints")[0][0] == 0


def test_checkpoint_signed_by_another_key_is_refused(env: Env) -> None:
    env.send(env.append(2))
    cp = Checkpoint(f"coalgate/{SITE}", 2, env.ledger.root())
    forged = sign_checkpoint(cp, SignerKey.generate(SITE))
    env.ingestor.handle(topic(SITE, "checkpoint"), CheckpointMessage(SITE, forged).encode())
    assert env.alarms() == ["tamper_checkpoint"]


def test_two_ingestors_racing_on_one_site_store_each_entry_once(env: Env) -> None:
    entries = env.append(300)
    batches = [entries[i:i + 20] for i in range(0, 300, 20)]
    conns = [psycopg.connect(env.url) for _ in range(2)]
    workers = [Ingestor(c, env.witness, projector=None) for c in conns]
    errors: list[BaseException] = []

    def run(w: Ingestor, order: list[list[SignedEntry]]) -> None:
        try:
            for _ in range(3):  # each worker keeps re-sending what is not yet acked
                for b in order:
                    env.send(b, ingestor=w)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(workers[0], batches)),
               threading.Thread(target=run, args=(workers[1], batches[::-1] + batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    assert errors == []
    rows = env.q("SELECT seq, hash FROM entries ORDER BY seq")
    assert [r[0] for r in rows] == list(range(300))
    assert [bytes(r[1]) for r in rows] == [se.hash for se in entries]
    assert env.alarms() == []


def test_migrations_are_idempotent(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        assert migrate(conn) == []
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert 1 in versions
