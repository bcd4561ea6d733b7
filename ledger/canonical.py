"""RFC 8785 (JCS) canonical JSON for ledger values, on the C-accelerated stdlib encoder.

Why there are two implementations: the `rfc8785` package is a faithful, complete JCS
(including the ECMAScript number formatting of RFC 8785 §3.2.2.3), but it is pure Python and
was ~45 % of append time and most of the central's per-entry ingest time. Ledger values never
hold floats (entries refuse them) and integers stay within ±(2^53−1), so JCS reduces to what the
C encoder of :mod:`json` already does, with keys in the right order. This module is the one the
ledger uses; `rfc8785` stays as the reference implementation that the tests compare this one
against, byte for byte, over random values (tests/ledger/test_canonical.py).

What JCS asks for and how it is met here (RFC 8785 §3.2):

- No whitespace: ``separators=(",", ":")``.
- Strings (§3.2.2.2): ``"`` and ``\\`` and the control characters U+0000–U+001F are escaped —
  ``\\b \\t \\n \\f \\r`` in short form, the others as ``\\u00xx`` with lower-case hex — and
  every other character, including DEL (U+007F), U+2028/U+2029 and astral-plane characters,
  is written as itself in UTF-8. That is exactly ``json.dumps(..., ensure_ascii=False)``.
  Lone surrogates cannot be written in UTF-8: they are refused (as `rfc8785` does).
- Integers (§3.2.2.3, for integral values): plain decimal, which is ``int.__repr__``. Values
  outside ±(2^53−1) are refused, as are floats (weights are integer kilograms).
- Object members (§3.2.3) sorted by the UTF-16 code units of their names. For names made only
  of characters below U+D800 that is the same as code-point order, which the C encoder's
  ``sort_keys`` uses; any name with a character at or above U+D800 (astral-plane, private-use,
  or a lone surrogate) sends the value down a slower path that sorts by UTF-16-BE bytes itself.
- Only ``dict`` objects, ``list`` arrays, ``str``, ``int``, ``bool`` and ``None``; keys must be
  strings. Subclasses (``IntEnum``, ``StrEnum``, ``OrderedDict``…) are converted to the plain
  type first, the way `rfc8785` treats them. Tuples are refused (`rfc8785` would write them as
  arrays): an entry parsed back would hold a list and no longer equal the one that was signed.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.errors import EntryError

__all__ = ["MAX_SAFE_INT", "canonical_json", "check_json_value"]

# I-JSON (RFC 7493) / JCS: integers beyond 2^53 cannot round-trip through other JSON readers.
MAX_SAFE_INT = 2**53 - 1

# Code units below U+D800 compare the same in UTF-16 as code points do; at U+D800 and above
# (surrogate pairs vs U+E000–U+FFFF) the two orders part.
_FIRST_UNSAFE_FOR_SORT = "\ud800"

# check_circular is off because the walk below has already been through the whole value
# (a cycle ends there in RecursionError); the encoder's id() bookkeeping would only cost time.
_SORTED = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False,
    check_circular=False,
)
_AS_GIVEN = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=False, allow_nan=False,
    check_circular=False,
)


class _Refused(Exception):
    """Internal: the value holds something JCS-for-ledgers does not allow; _explain says what."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``.

    ``value`` is built from dict (string keys), list, str, int within ±(2^53−1), bool and
    None. Anything else — a float, a larger integer, a non-string key, a lone surrogate, another
    type — raises :class:`~ledger.errors.EntryError` naming where it is, e.g.
    ``body.axles[2]: 1.5 is a float; …``.
    """
    try:
        needs_own_sort = _scan_value(value)
        if needs_own_sort:
            text = _AS_GIVEN.encode(_normalise(value))
        else:
            text = _SORTED.encode(value)
        return text.encode("utf-8")
    except (_Refused, UnicodeEncodeError, TypeError, ValueError):
        raise _refusal(value, "") from None
    except RecursionError:
        raise EntryError(
            "value is nested too deeply (or contains itself) to be written as JSON"
        ) from None


def check_json_value(value: Any, path: str = "value") -> None:
    """Refuse what :func:`canonical_json` refuses, without serialising — except lone surrogates.

    Those are only found when the text is encoded (:func:`canonical_json` refuses them); looking
    for them here would cost a pass over every string. ``path`` names ``value`` in messages.
    """
    try:
        _scan_value(value)
    except _Refused:
        raise _refusal(value, path) from None
    except RecursionError:
        raise EntryError(f"{path}: nested too deeply (or contains itself)") from None


# --------------------------------------------------------------------------- the fast walk


def _scan_value(value: Any) -> bool:
    t = type(value)
    if t is dict:
        return _scan_dict(value)
    if t is list:
        return _scan_list(value)
    if t is str or t is bool or value is None:
        return False
    if t is int:
        if -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            return False
        raise _Refused
    return _scan_other(value)


def _scan_dict(d: dict[Any, Any]) -> bool:
    """Validate one object; True when its keys (or a nested value) need the slow path.

    The scalar cases are inlined: this loop runs once per member of every entry written or read.
    """
    own_sort = False
    for k, v in d.items():
        if type(k) is not str:
            if not isinstance(k, str):
                raise _Refused
            own_sort = True
        elif not k.isascii() and max(k) >= _FIRST_UNSAFE_FOR_SORT:
            own_sort = True
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
                continue
            raise _Refused
        if t is dict:
            own_sort = _scan_dict(v) or own_sort
        elif t is list:
            own_sort = _scan_list(v) or own_sort
        else:
            own_sort = _scan_other(v) or own_sort
    return own_sort


def _scan_list(items: list[Any]) -> bool:
    own_sort = False
    for v in items:
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if -MAX_SAFE_INT <= v <= MAX_SAFE_INT:
                continue
            raise _Refused
        own_sort = _scan_value(v) or own_sort
    return own_sort


def _scan_other(value: Any) -> bool:
    """Subclasses of the allowed types go the slow path; everything else is refused."""
    if isinstance(value, float):
        raise _Refused
    if isinstance(value, int):  # IntEnum and friends (bool was handled by type)
        if -MAX_SAFE_INT <= int(value) <= MAX_SAFE_INT:
            return True
        raise _Refused
    if isinstance(value, str):
        return True
    if isinstance(value, dict):
        _scan_dict(dict(value))
        return True
    if isinstance(value, list):
        _scan_list(list(value))
        return True
    raise _Refused


# --------------------------------------------------------------------------- the slow path


def _utf16_key(name: str) -> bytes:
    # str.encode, not name.encode: a str subclass cannot change the order.
    return str.encode(name, "utf-16-be")  # lone surrogates raise UnicodeEncodeError


def _normalise(value: Any) -> Any:
    """A plain copy of ``value`` with every object's members in UTF-16 order (already valid)."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # an exact str with the same characters
    if isinstance(value, int):
        return int(value)
    if isinstance(value, dict):
        plain = dict(value)
        ordered = sorted(plain.items(), key=lambda kv: _utf16_key(kv[0]))
        return {str.__str__(k): _normalise(v) for k, v in ordered}
    return [_normalise(v) for v in value]


# ------------------------------------------------------------------------------ the words


def _refusal(value: Any, path: str) -> EntryError:
    """The error to raise for a refused value: the first fault found, named with its place."""
    try:
        _explain(value, path)
    except EntryError as exc:
        return exc
    except RecursionError:
        pass
    return EntryError(f"{path or 'value'}: cannot be written as RFC 8785 JSON")


def _explain(value: Any, path: str) -> None:
    """Find the first thing in ``value`` that is not allowed and raise EntryError naming it."""
    where = path or "value"
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, float):
        raise EntryError(
            f"{where}: {value!r} is a float; use integers (kilograms, per-mille, milliseconds)"
        )
    if isinstance(value, int):
        if abs(int(value)) > MAX_SAFE_INT:
            raise EntryError(
                f"{where}: integer {int(value)} is outside ±(2^53−1); store it as a string"
            )
        return
    if isinstance(value, str):
        _explain_text(value, where, "string")
        return
    if isinstance(value, dict):
        for k, v in dict(value).items():
            if not isinstance(k, str):
                raise EntryError(f"{where}: key {k!r} is not a string; JSON keys are strings")
            _explain_text(k, where, "key")
            _explain(v, f"{path}.{k}" if path else k)
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _explain(v, f"{where}[{i}]")
        return
    raise EntryError(
        f"{where}: {type(value).__name__} is not a JSON value; use objects, arrays, strings, "
        "integers, true/false or null"
    )


def _explain_text(text: str, where: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EntryError(
            f"{where}: {what} {text[:40]!r} holds a lone surrogate "
            f"(U+{ord(text[exc.start]):04X} at index {exc.start}), which UTF-8 cannot encode; "
            "send well-formed Unicode text"
        ) from None
