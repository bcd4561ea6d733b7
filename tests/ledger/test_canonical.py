"""ledger.canonical: the fast RFC 8785 serialiser is byte-identical to the `rfc8785` reference.

`rfc8785` (pure Python, complete) stays the reference; `ledger.canonical` (stdlib C encoder,
keys pre-sorted by UTF-16) is what the ledger runs. Every allowed value must give the same bytes
from both; everything not allowed must be refused with EntryError, as entries always were.
"""

from __future__ import annotations

import enum
import json
import re
from collections import OrderedDict
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.canonical import MAX_SAFE_INT, canonical_json, check_json_value
from ledger.entry import ZERO_HASH, Entry, SignedEntry, check_body
from ledger.errors import EntryError

# Characters where a JSON encoder and JCS could part ways, and keys whose UTF-16 order is not
# their code-point order (astral-plane characters sort before U+E000–U+FFFF in UTF-16).
_TRICKY = (
    [chr(c) for c in range(0x20)]
    + ['"', "\\", "/", "\x7f", "\x80", "\x9f", "\u00e9", "\u2028", "\u2029", "\ufeff", "煤", "陕"]
    + ["\ud7ff", "\ue000", "\uf8ff", "\ufb33", "\ufffd", "\uffff"]
    + ["\U00010000", "\U0001f600", "\U0001f4a9", "\U0010ffff", "a", "A", "0", " "]
)
# Any Unicode scalar value (surrogate code points are not characters UTF-8 can carry).
_ANY_CHAR = st.characters(codec="utf-8")
_TEXT = st.text(st.one_of(st.sampled_from(_TRICKY), _ANY_CHAR), max_size=12)
_INTS = st.one_of(
    st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
    st.sampled_from([0, -1, 1, MAX_SAFE_INT, -MAX_SAFE_INT, 2**31, -(2**31), 10**15]),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _INTS, _TEXT)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(_TEXT, inner, max_size=8)
    ),
    max_leaves=40,
)


@settings(max_examples=600, deadline=None)
@given(_VALUES)
@example({"\U0001f600": 1, "\uffff": 2, "\ue000": 3, "z": 4})
@example(["\x00\x1f\x7f\u2028\u2029\"\\/"])
@example({"": {"": [MAX_SAFE_INT, -MAX_SAFE_INT]}})
def test_identical_to_rfc8785_reference(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=8))
def test_entries_round_trip_and_match_reference(body: dict[str, Any]) -> None:
    entry = Entry(site="mine-a", seq=7, ts="2026-11-28T12:00:00.000Z", kind="weighing",
                  body=body, prev=bytes(range(32)))
    leaf = entry.leaf_bytes()
    assert leaf == rfc8785.dumps(entry.to_json_obj())
    assert Entry.from_leaf(leaf) == entry


def test_keys_sort_by_utf16_code_units_rfc8785_3_2_3() -> None:
    # The sorting example of RFC 8785 §3.2.3: code-point order would put U+FB33 before U+1F600.
    value = {
        "\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet",
        "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    out = canonical_json(value).decode("utf-8")
    keys = [k for k, _ in json.loads(out, object_pairs_hook=lambda p: p)]
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert sorted(value) != keys  # the case where code-point order is wrong
    assert canonical_json(value) == rfc8785.dumps(value)


def test_string_escapes_rfc8785_3_2_2_2() -> None:
    # The RFC's own example: "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/"
    value = {"numbers": [333333333, 4, 2, 0], "string": "€$\x0f\nA'B\"\\\\\"/",
             "literals": [None, True, False]}
    assert canonical_json(value) == (
        '{"literals":[null,true,false],"numbers":[333333333,4,2,0],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()


@pytest.mark.parametrize("code", [*range(0x20), 0x22, 0x2F, 0x5C, 0x7F, 0x2028, 0x2029, 0x1F600])
def test_each_escape_matches_reference(code: int) -> None:
    text = f"a{chr(code)}b"
    out = canonical_json(text)
    assert out == rfc8785.dumps(text)
    if code < 0x20 and chr(code) not in "\b\t\n\f\r":
        assert out == f'"a\\u{code:04x}b"'.encode()  # lower-case hex, six characters
    if code in (0x2F, 0x7F, 0x2028, 0x2029, 0x1F600):
        assert out == f'"a{chr(code)}b"'.encode()  # written as itself


class _Axles(enum.IntEnum):
    SIX = 6


class _Pass(enum.StrEnum):
    GROSS = "gross"
    ASTRAL = "\U0001f69a"
    HIGH = "\uffee"


class _Text(str):
    pass


def test_subclasses_are_written_as_their_plain_values() -> None:
    value: OrderedDict[str, Any] = OrderedDict(
        [("z", _Axles.SIX), (_Pass.ASTRAL, [_Pass.GROSS]), (_Pass.HIGH, _Text("x\n")),
         ("a", {_Text("k"): True})]
    )
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value) == (
        '{"a":{"k":true},"z":6,"\U0001f69a":["gross"],"\uffee":"x\\n"}'.encode()
    )


@pytest.mark.parametrize("value", [None, True, False, 0, -MAX_SAFE_INT, "", "煤", [], {}])
def test_top_level_scalars_and_empties(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (1.5, "value: 1.5 is a float"),
        (0.0, "value: 0.0 is a float"),
        ({"w": [1, 2.0]}, "w[1]: 2.0 is a float"),
        (float("nan"), "is a float"),
        (2**53, "integer 9007199254740992 is outside"),
        (-(2**53), "integer -9007199254740992 is outside"),
        ({"a": {"b": 10**20}}, "a.b: integer"),
        ({1: "x"}, "key 1 is not a string"),
        ({"a": {None: 1}}, "a: key None is not a string"),
        ({(1, 2): 1}, "is not a string"),
        ("\ud800", "lone surrogate (U+D800 at index 0)"),
        ({"note": "ok\udfff"}, "note: string 'ok\\udfff' holds a lone surrogate"),
        ({"\udc00": 1, "b": 2}, "key '\\udc00' holds a lone surrogate"),
        ({"\udc00": 1}, "key '\\udc00' holds a lone surrogate"),
        ([("tuple",)], "value[0]: tuple is not a JSON value"),
        ({"b": b"bytes"}, "b: bytes is not a JSON value"),
        ({"s": {1, 2}}, "s: set is not a JSON value"),
        ({"o": object()}, "o: object is not a JSON value"),
    ],
)
def test_what_is_not_allowed_is_refused_naming_where(value: Any, where: str) -> None:
    with pytest.raises(EntryError) as caught:
        canonical_json(value)
    assert where in str(caught.value)


@settings(max_examples=150, deadline=None)
@given(
    _VALUES,
    st.sampled_from([1.25, -0.0, 2**53, -(2**60), "\ud83d", b"x", (1,)]),
    st.randoms(use_true_random=False),
)
def test_one_bad_value_anywhere_is_refused(value: Any, bad: Any, rnd: Any) -> None:
    # Put the bad value at a random place in a random allowed value (or make it the value).
    def plant(v: Any) -> Any:
        if isinstance(v, dict) and v and rnd.random() < 0.7:
            k = rnd.choice(sorted(v))
            return {**v, k: plant(v[k])}
        if isinstance(v, list) and v and rnd.random() < 0.7:
            i = rnd.randrange(len(v))
            return v[:i] + [plant(v[i])] + v[i + 1:]
        return bad

    with pytest.raises(EntryError):
        canonical_json(plant(value))


def test_cycles_and_deep_nesting_are_refused_not_crashes() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(EntryError, match="nested too deeply"):
        canonical_json(loop)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(EntryError, match="nested too deeply"):
        canonical_json(deep)


# --------------------------------------------------------------- entries keep their errors


def _leaf(body_json: str) -> bytes:
    return (
        '{"body":' + body_json + ',"kind":"weighing",'
        '"prev":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","seq":0,"site":"mine-a",'
        '"ts":"2026-11-28T12:00:00.000Z","v":1}'
    ).encode("utf-8")


def test_canonical_leaf_with_tricky_text_parses() -> None:
    body = {"\U0001f600": "\u2028\x7f", "\uffff": "\x00", "煤": "陕K12345"}
    leaf = _leaf(canonical_json(body).decode("utf-8"))
    assert Entry.from_leaf(leaf).body == body


@pytest.mark.parametrize(
    ("body_json", "message"),
    [
        ('{"\uffff":1,"\U0001f600":2}', "not in RFC 8785 canonical form"),  # code-point order
        ('{"a":"\\u00e9"}', "not in RFC 8785 canonical form"),  # escaped where JCS writes é
        ('{"a":"\\/"}', "not in RFC 8785 canonical form"),
        ('{"a":"\\u001F"}', "not in RFC 8785 canonical form"),  # upper-case hex
        ('{"a":"\\u000a"}', "not in RFC 8785 canonical form"),  # \n has a short form
        ('{"a":1,"a":1}', "duplicate JSON key 'a'"),
        ('{"a":1,"a":2}', "duplicate JSON key 'a'"),
        ('{"a":"\\ud800"}', "lone surrogate"),
        ('{"a":1e3}', "is not an integer"),
        ('{"a":9007199254740992}', "outside"),
        ('[' * 50_000 + ']' * 50_000, "nested too deeply"),
    ],
)
def test_non_canonical_or_bad_leaves_are_refused(body_json: str, message: str) -> None:
    with pytest.raises(EntryError, match=message):
        Entry.from_leaf(_leaf(body_json))


def test_duplicate_top_level_field_is_reported_before_other_faults() -> None:
    # Parsing collapses the duplicate; the strict re-parse still names it first.
    leaf = _leaf('{}').replace(b'"seq":0', b'"seq":0,"seq":0')
    with pytest.raises(EntryError, match="duplicate JSON key 'seq'"):
        Entry.from_leaf(leaf)


def test_entry_with_lone_surrogate_cannot_be_signed() -> None:
    entry = Entry(site="mine-a", seq=0, ts="2026-11-28T12:00:00.000Z", kind="weighing",
                  body={"plate": "\udc80"}, prev=ZERO_HASH)
    with pytest.raises(EntryError, match="seq 0: cannot canonicalise entry: body.plate"):
        entry.leaf_bytes()


def test_leaf_is_computed_once_and_matches_signed_entry() -> None:
    entry = Entry(site="mine-a", seq=0, ts="2026-11-28T12:00:00.000Z", kind="weighing",
                  body={"gross_kg": 48960}, prev=ZERO_HASH)
    assert entry.leaf_bytes() is entry.leaf_bytes()
    assert SignedEntry(entry.leaf_bytes(), bytes(64)).hash == entry.entry_hash()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"w": [1, {"kg": 1.5}]}, "body.w[1].kg: 1.5 is a float"),
        ({"big": -(2**60)}, "body.big: integer -1152921504606846976 is outside ±(2^53−1)"),
        ({"m": {3: "x"}}, "body.m: key 3 is not a string"),
        ({"t": (1, 2)}, "body.t: tuple is not a JSON value"),
    ],
)
def test_body_check_is_the_canonicalisers_and_names_the_place(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(EntryError, match=re.escape(message)):
        check_body(body)
    with pytest.raises(EntryError, match=re.escape(message)):
        Entry(site="mine-a", seq=0, ts="2026-11-28T12:00:00.000Z", kind="weighing",
              body=body, prev=ZERO_HASH)


@settings(max_examples=200, deadline=None)
@given(_VALUES)
def test_body_check_accepts_exactly_what_canonicalises(value: Any) -> None:
    check_json_value(value)  # allowed values pass...
    check_json_value({"a": [value]})
    with pytest.raises(EntryError):  # ...and one float anywhere does not
        check_json_value({"a": [value, 0.5]})
