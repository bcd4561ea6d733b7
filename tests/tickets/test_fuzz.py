"""The decoder under random and mutated input: typed rejection, never a crash, never an
altered ticket accepted."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.base45 import ALPHABET, b45encode
from ledger.keys import SignerKey
from ledger.ticket import PREFIX, issue_ticket, parse_ticket, verify_ticket
from ledger.ticket_errors import TicketError
from ledger.trust import TrustList
from tests.tickets.conftest import T0, typical_ticket

SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(text: str, original: str, trust: TrustList) -> None:
    try:
        ticket = verify_ticket(text, trust, now=T0 + timedelta(hours=1))
    except TicketError as exc:
        assert exc.reason in {"malformed", "bad_signature", "unknown_issuer", "expired",
                              "not_yet_valid"}
        assert str(exc)
        return
    # Accepted: it must be the very ticket that was signed, with the same signature.
    assert ticket == typical_ticket()
    assert parse_ticket(text).sign1.signature == parse_ticket(original).sign1.signature


@SETTINGS
@given(text=st.text(max_size=400))
def test_random_text(text: str, ticket_text: str, trust: TrustList) -> None:
    check(text, ticket_text, trust)


@SETTINGS
@given(body=st.text(alphabet=ALPHABET, max_size=400))
def test_random_base45_behind_prefix(body: str, ticket_text: str, trust: TrustList) -> None:
    check(PREFIX + body, ticket_text, trust)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_random_bytes_behind_prefix(data: bytes, ticket_text: str, trust: TrustList) -> None:
    check(PREFIX + b45encode(data), ticket_text, trust)


def _mutations() -> st.SearchStrategy[tuple[str, int, str]]:
    return st.tuples(
        st.sampled_from(["replace", "insert", "delete", "swap"]),
        st.integers(min_value=0, max_value=10_000),
        st.sampled_from(ALPHABET),
    )


def _apply(text: str, muts: list[tuple[str, int, str]]) -> str:
    for op, pos, ch in muts:
        if not text:
            break
        i = pos % len(text)
        if op == "replace":
            text = text[:i] + ch + text[i + 1:]
        elif op == "insert":
            text = text[:i] + ch + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + 1:]
        elif i + 1 < len(text):
            text = text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text


@SETTINGS
@given(muts=st.lists(_mutations(), min_size=1, max_size=4))
def test_mutated_ticket(muts: list[tuple[str, int, str]], ticket_text: str,
                        trust: TrustList) -> None:
    check(_apply(ticket_text, muts), ticket_text, trust)


@SETTINGS
@given(muts=st.lists(_mutations(), min_size=1, max_size=3))
def test_mutated_compressed_ticket(muts: list[tuple[str, int, str]],
                                   issuer_key: SignerKey, trust: TrustList) -> None:
    original = issue_ticket(typical_ticket(), issuer_key, compress=True)
    check(_apply(original, muts), original, trust)


@SETTINGS
@given(pos=st.integers(min_value=0, max_value=10_000), bit=st.integers(min_value=0, max_value=7))
def test_every_bit_flip_of_the_cose_bytes(pos: int, bit: int, ticket_text: str,
                                          trust: TrustList) -> None:
    from ledger.base45 import b45decode

    raw = bytearray(b45decode(ticket_text[len(PREFIX):]))
    raw[pos % len(raw)] ^= 1 << bit
    check(PREFIX + b45encode(bytes(raw)), ticket_text, trust)
