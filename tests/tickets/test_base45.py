from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.base45 import ALPHABET, Base45Error, b45decode, b45encode
from ledger.ticket_errors import TicketFormatError

# RFC 9285 §4.3 and §4.4 examples
RFC_EXAMPLES = [
    (b"AB", "BB8"),
    (b"Hello!!", "%69 VD92EX0"),
    (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"),
]


@pytest.mark.parametrize(("raw", "text"), RFC_EXAMPLES)
def test_rfc9285_examples(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text
    assert b45decode(text) == raw


def test_empty() -> None:
    assert b45encode(b"") == ""
    assert b45decode("") == b""


@given(st.binary(max_size=600))
def test_round_trip(data: bytes) -> None:
    text = b45encode(data)
    assert set(text) <= set(ALPHABET)
    assert b45decode(text) == data


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("GGW", "65535"),  # RFC 9285 §4.2: 'GGW' = 65536 is invalid
        ("ZZ", "255"),  # a final pair above 255
        ("A", "3k+1"),
        ("BB8A", "3k+1"),
        ("bb8", "position 0"),  # lower case is not base45
        ("BB8é5", "position 3"),
    ],
)
def test_rejects_invalid_text(text: str, fragment: str) -> None:
    with pytest.raises(Base45Error, match=fragment.replace("+", r"\+")):
        b45decode(text)
    assert issubclass(Base45Error, TicketFormatError)
