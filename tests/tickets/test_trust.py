from __future__ import annotations

from datetime import timedelta

import pytest

from ledger.keys import SignerKey
from ledger.ticket import issue_ticket, verify_ticket
from ledger.ticket_errors import TicketFormatError, TrustListError, UnknownIssuerError
from ledger.trust import TRUST_HEADER, TrustList
from tests.tickets.conftest import ISSUER, T0, typical_ticket


def test_text_round_trip(trust: TrustList) -> None:
    text = trust.to_text()
    assert text.startswith(TRUST_HEADER + "\n") and text.endswith("\n")
    assert TrustList.from_text(text) == trust


def test_signed_list_opens_only_with_the_root(trust: TrustList, root_key: SignerKey) -> None:
    note = trust.sign([root_key])
    assert TrustList.open(note, [root_key.verifier]) == trust
    other = SignerKey("bureau-root", bytes(range(1, 33)))
    with pytest.raises(TrustListError):
        TrustList.open(note, [other.verifier])
    with pytest.raises(TrustListError, match="no trust-root key"):
        TrustList.open(note, [])
    tampered = note.replace("max-validity-days 31", "max-validity-days 99")
    with pytest.raises(TrustListError):
        TrustList.open(tampered, [root_key.verifier])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("hello\n", "must start with"),
        (f"{TRUST_HEADER}\nserial 1\n", "needs serial"),
        (f"{TRUST_HEADER}\nserial x\nissued 2026-01-01T00:00:00Z\nmax-validity-days 3\n",
         "serial must be"),
        (f"{TRUST_HEADER}\nserial 1\nissued 2026-01-01\nmax-validity-days 3\n", "RFC 3339"),
        (f"{TRUST_HEADER}\nserial 1\nissued 2026-01-01T00:00:00Z\nmax-validity-days 0\n",
         "1..366"),
        (f"{TRUST_HEADER}\nserial 1\nissued 2026-01-01T00:00:00Z\nmax-validity-days 3\nkey x\n",
         "line 5"),
        (f"{TRUST_HEADER}\nserial 1\nissued 2026-01-01T00:00:00Z\nmax-validity-days 3\n"
         "key E1 2026-01-01T00:00:00Z - a+00000000+AAAA\n", "line 5"),
    ],
)
def test_malformed_lists(body: str, fragment: str) -> None:
    with pytest.raises(TrustListError, match=fragment):
        TrustList.from_text(body)


def test_rotation(issuer_key: SignerKey, trust: TrustList) -> None:
    new_key = SignerKey(ISSUER, bytes(range(50, 82)))
    switch = T0 + timedelta(days=1)
    rotated = trust.add_key(ISSUER, new_key.verifier, switch, now=switch).retire_key(
        issuer_key.key_id, switch, now=switch
    )
    assert rotated.serial == trust.serial + 2
    assert TrustList.from_text(rotated.to_text()) == rotated
    old_ticket = issue_ticket(typical_ticket(), issuer_key)
    assert verify_ticket(old_ticket, rotated) == typical_ticket()  # issued before retirement
    late = typical_ticket(issued_at=switch, valid_from=switch, valid_to=switch + timedelta(days=1))
    with pytest.raises(UnknownIssuerError, match="only valid for tickets issued"):
        verify_ticket(issue_ticket(late, issuer_key), rotated)
    assert verify_ticket(issue_ticket(late, new_key), rotated) == late
    early = typical_ticket()
    with pytest.raises(UnknownIssuerError, match="only valid for tickets issued"):
        verify_ticket(issue_ticket(early, new_key), rotated)  # new key cannot backdate


def test_removed_key_rejects_everything_it_signed(issuer_key: SignerKey, trust: TrustList) -> None:
    text = issue_ticket(typical_ticket(), issuer_key)
    pruned = trust.remove_key(issuer_key.key_id, now=T0)
    with pytest.raises(UnknownIssuerError):
        verify_ticket(text, pruned)
    with pytest.raises(TrustListError):
        pruned.remove_key(issuer_key.key_id, now=T0)
    with pytest.raises(TrustListError, match="already"):
        trust.add_key(ISSUER, issuer_key.verifier, T0, now=T0)


def test_max_validity(issuer_key: SignerKey, trust: TrustList) -> None:
    long = typical_ticket(valid_to=T0 + timedelta(days=32))
    with pytest.raises(TicketFormatError, match="more than 31 days"):
        verify_ticket(issue_ticket(long, issuer_key), trust)
