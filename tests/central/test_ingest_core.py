"""Pure ingest verification: check_batch decides store / duplicate / fork / forgery / gap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from central.ingest.core import SiteView, check_batch
from edge_agent.sync.protocol import (
    Ack,
    LedgerBatch,
    ProtocolError,
    ResendRequest,
    Status,
    site_from_topic,
    topic,
)
from ledger.entry import ZERO_HASH, Entry, SignedEntry, sign_entry
from ledger.keys import SignerKey

SITE = "mine-a"


def make_chain(key: SignerKey, n: int, site: str = SITE, start_prev: bytes = ZERO_HASH,
               start: int = 0, body_tag: str = "x") -> list[SignedEntry]:
    out = []
    prev = start_prev
    for seq in range(start, start + n):
        e = Entry(site=site, seq=seq, ts="2026-11-28T08:00:00.000Z", kind="weighing",
                  body={"txn": f"{site}-20261128-{seq}", "weight_kg": 30000 + seq, "t": body_tag},
                  prev=prev)
        se = sign_entry(e, key)
        out.append(se)
        prev = se.hash
    return out


@pytest.fixture(scope="module")
def key() -> SignerKey:
    return SignerKey.generate(SITE)


def empty_view(key: SignerKey) -> SiteView:
    return SiteView(SITE, key.verifier, -1, ZERO_HASH)


def test_fresh_chain_is_accepted_in_order(key: SignerKey) -> None:
    chain = make_chain(key, 5)
    out = check_batch(empty_view(key), SITE, chain, {})
    assert [ve.seq for ve in out.accepted] == [0, 1, 2, 3, 4]
    assert out.alarms == [] and out.rejected is None and out.resend_from is None
    assert out.verified_seq_after == 4
    assert out.accepted[-1].hash == chain[-1].hash


def test_resent_entries_are_duplicates_not_stored_twice(key: SignerKey) -> None:
    chain = make_chain(key, 6)
    view = SiteView(SITE, key.verifier, 3, chain[3].hash)
    known = {i: chain[i].hash for i in range(4)}
    out = check_batch(view, SITE, chain[2:], known)
    assert out.duplicates == 2
    assert [ve.seq for ve in out.accepted] == [4, 5]
    assert out.alarms == []


def test_gap_requests_resend_from_next_expected(key: SignerKey) -> None:
    chain = make_chain(key, 10)
    view = SiteView(SITE, key.verifier, 2, chain[2].hash)
    out = check_batch(view, SITE, chain[6:], {})
    assert out.accepted == [] and out.resend_from == 3 and out.alarms == []


def test_same_seq_different_hash_signed_by_site_is_a_fork(key: SignerKey) -> None:
    chain = make_chain(key, 4)
    other = make_chain(key, 4, body_tag="y")
    view = SiteView(SITE, key.verifier, 3, chain[3].hash)
    out = check_batch(view, SITE, other[2:], {i: chain[i].hash for i in range(4)})
    assert out.accepted == []
    assert [a.code for a in out.alarms] == ["tamper_fork"]
    assert out.alarms[0].seq == 2


def test_next_entry_with_wrong_prev_but_valid_signature_is_a_fork(key: SignerKey) -> None:
    chain = make_chain(key, 3)
    rogue = make_chain(key, 1, start=3, start_prev=bytes([7]) * 32)
    view = SiteView(SITE, key.verifier, 2, chain[2].hash)
    out = check_batch(view, SITE, rogue, {})
    assert [a.code for a in out.alarms] == ["tamper_fork"] and out.accepted == []


def test_wrong_key_is_refused_and_prefix_kept(key: SignerKey) -> None:
    chain = make_chain(key, 3)
    impostor = SignerKey.generate(SITE)
    forged = make_chain(impostor, 2, start=3, start_prev=chain[2].hash)
    out = check_batch(empty_view(key), SITE, chain + forged, {})
    assert [ve.seq for ve in out.accepted] == [0, 1, 2]
    assert [a.code for a in out.alarms] == ["tamper_signature"]
    assert out.alarms[0].seq == 3
    assert out.rejected is not None and out.rejected[0] == "bad_signature"


def test_altered_leaf_with_original_signature_is_refused(key: SignerKey) -> None:
    chain = make_chain(key, 2)
    e = chain[1].entry
    altered = replace(e, body={**e.body, "weight_kg": 1})
    forged = SignedEntry(altered.leaf_bytes(), chain[1].sig)
    out = check_batch(empty_view(key), SITE, [chain[0], forged], {})
    assert [ve.seq for ve in out.accepted] == [0]
    assert [a.code for a in out.alarms] == ["tamper_signature"]


def test_entry_for_another_site_on_this_topic_is_refused(key: SignerKey) -> None:
    other_key = SignerKey.generate("mine-b")
    theirs = make_chain(other_key, 2, site="mine-b")
    out = check_batch(empty_view(key), SITE, theirs, {})
    assert out.accepted == []
    assert [a.code for a in out.alarms] == ["tamper_topic"]


def test_non_canonical_leaf_is_refused(key: SignerKey) -> None:
    chain = make_chain(key, 1)
    spaced = chain[0].leaf.replace(b",", b", ", 1)
    bad = SignedEntry(spaced, key.sign(spaced))
    out = check_batch(empty_view(key), SITE, [bad], {})
    assert out.accepted == [] and out.rejected is not None
    assert out.rejected[0] == "malformed_entry"


def test_replayed_old_batch_with_different_key_is_forgery_not_fork(key: SignerKey) -> None:
    chain = make_chain(key, 3)
    impostor = SignerKey.generate(SITE)
    forged = make_chain(impostor, 3, body_tag="forged")
    view = SiteView(SITE, key.verifier, 2, chain[2].hash)
    out = check_batch(view, SITE, forged, {i: chain[i].hash for i in range(3)})
    assert [a.code for a in out.alarms] == ["tamper_signature"]


# -- protocol ------------------------------------------------------------------------------


def test_batch_round_trip(key: SignerKey) -> None:
    chain = make_chain(key, 3)
    decoded = LedgerBatch.decode(LedgerBatch(SITE, 0, tuple(chain)).encode())
    assert decoded.site == SITE and decoded.start == 0
    assert [se.hash for se in decoded.entries] == [se.hash for se in chain]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"v":2,"site":"a","from":0,"entries":[]}', "version"),
        (b'{"v":1,"site":"a","from":-1,"entries":[{}]}', "'from'"),
        (b'{"v":1,"site":"a","from":0,"entries":[]}', "non-empty list"),
        (b'{"v":1,"site":"a","from":0,"entries":[{"leaf":"x","hash":"AA==","sig":"AA=="}]}',
         r"entries\[0\]"),
    ],
)
def test_malformed_batches_name_the_problem(payload: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        LedgerBatch.decode(payload)


def test_small_messages_round_trip() -> None:
    assert Ack.decode(Ack(5, "note").encode()) == Ack(5, "note")
    assert Ack.decode(Ack(-1).encode()) == Ack(-1, None)
    assert Status.decode(Status("online", acked=3).encode()).acked == 3
    assert ResendRequest(7).encode() == b'{"v":1,"cmd":"resend","from":7}'
    assert site_from_topic(topic("mine-a", "ledger")) == ("mine-a", "ledger")
    with pytest.raises(ProtocolError):
        site_from_topic("coalgate/v1/sites/a/b/ledger")
    with pytest.raises(ProtocolError):
        Status.decode(b'{"v":1,"state":"sleepy"}')


def test_batch_whose_from_lies_is_refused_without_alarm(key: SignerKey) -> None:
    chain = make_chain(key, 4)
    view = SiteView(SITE, key.verifier, 3, chain[3].hash)
    out = check_batch(view, SITE, chain[1:3], {})  # the worker read no hashes for them
    assert out.accepted == [] and out.alarms == []
    assert out.rejected is not None and out.rejected[0] == "bad_envelope"
