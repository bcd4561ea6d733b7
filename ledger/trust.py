"""The issuer trust list: which Ed25519 keys may sign e-tickets for which enterprise, and when.

Published by the energy bureau as a C2SP signed note (the same format as checkpoints), signed by
a trust-root key every gate is provisioned with. Body (one line each, UTF-8, ends with newline):

    coalgate ticket trust list v1
    serial 7
    issued 2026-11-01T00:00:00Z
    max-validity-days 31
    key <issuer> <not-before> <not-after | -> <verifier key: name+kid+base64>
    ...

Rotation: add the new key with its not-before, and give the old key a not-after. A key only
covers tickets whose issue time (iat) falls in [not-before, not-after); because no ticket may
be valid for longer than max-validity-days after it was issued, a retired key stops mattering
that many days after retirement. A compromised key is removed from the list outright, which
makes every ticket it signed ``unknown_issuer`` at once. Gates keep the highest serial they
have seen and refuse an older list (no rollback).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ledger.errors import KeyFormatError, LedgerError
from ledger.keys import SignerKey, VerifierKey
from ledger.ticket_errors import TicketFormatError, TrustListError, UnknownIssuerError

__all__ = ["TRUST_HEADER", "IssuerKey", "TrustList", "format_time", "parse_time"]

TRUST_HEADER = "coalgate ticket trust list v1"
DEFAULT_MAX_VALIDITY_DAYS = 31


def format_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, where: str) -> datetime:
    try:
        dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError as exc:
        raise TrustListError(
            f"{where}: time {text!r} must be RFC 3339 UTC like 2026-11-01T00:00:00Z"
        ) from exc
    return dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class IssuerKey:
    """One issuer verifier key with the window of issue times it covers."""

    issuer: str
    key: VerifierKey
    not_before: datetime
    not_after: datetime | None = None

    def covers(self, issued_at: datetime) -> bool:
        return self.not_before <= issued_at and (
            self.not_after is None or issued_at < self.not_after
        )

    def check_covers(
        self,
        *,
        issuer: str,
        issued_at: datetime,
        valid_from: datetime,
        valid_to: datetime,
        max_validity: timedelta,
    ) -> None:
        """Raise unless this key may have signed a ticket with these claims."""
        kid = self.key.key_id.hex()
        if issuer != self.issuer:
            raise UnknownIssuerError(
                f"ticket claims issuer {issuer!r} but key {kid} belongs to {self.issuer!r}"
            )
        if not self.covers(issued_at):
            until = format_time(self.not_after) if self.not_after else "-"
            raise UnknownIssuerError(
                f"ticket issued {format_time(issued_at)} but key {kid} of {self.issuer!r} is "
                f"only valid for tickets issued {format_time(self.not_before)} .. {until}"
            )
        if valid_to - issued_at > max_validity:
            raise TicketFormatError(
                f"ticket is valid until {format_time(valid_to)}, more than "
                f"{max_validity.days} days after it was issued ({format_time(issued_at)}); "
                "the trust list does not allow such long-lived tickets"
            )

    def to_line(self) -> str:
        until = format_time(self.not_after) if self.not_after else "-"
        return f"key {self.issuer} {format_time(self.not_before)} {until} {self.key.to_text()}"


@dataclass(frozen=True)
class TrustList:
    serial: int
    issued: datetime
    keys: tuple[IssuerKey, ...]
    max_validity_days: int = DEFAULT_MAX_VALIDITY_DAYS

    @property
    def max_validity(self) -> timedelta:
        return timedelta(days=self.max_validity_days)

    def candidates(self, kid: bytes) -> list[IssuerKey]:
        """Keys whose C2SP key id is ``kid`` (4 bytes can collide, so possibly several)."""
        return [k for k in self.keys if k.key.key_id == kid]

    # -- building and rotating ----------------------------------------------------------
    @classmethod
    def single(cls, key: VerifierKey, *, issuer: str | None = None) -> TrustList:
        """A one-key, unsigned list: integrator tests and ``ticket verify --trust KEYFILE``."""
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return cls(0, epoch, (IssuerKey(issuer or key.name, key, epoch),))

    def add_key(
        self, issuer: str, key: VerifierKey, not_before: datetime, *, now: datetime
    ) -> TrustList:
        if any(k.key == key for k in self.keys):
            raise TrustListError(f"key {key.key_id.hex()} is already in the trust list")
        entry = IssuerKey(issuer, key, not_before.astimezone(UTC).replace(microsecond=0))
        return replace(self, serial=self.serial + 1, issued=now, keys=(*self.keys, entry))

    def retire_key(self, kid: bytes, not_after: datetime, *, now: datetime) -> TrustList:
        """Stop a key covering tickets issued at or after ``not_after`` (rotation)."""
        found = False
        keys = []
        for k in self.keys:
            if k.key.key_id == kid:
                found = True
                k = replace(k, not_after=not_after.astimezone(UTC).replace(microsecond=0))
            keys.append(k)
        if not found:
            raise TrustListError(f"no key {kid.hex()} in the trust list to retire")
        return replace(self, serial=self.serial + 1, issued=now, keys=tuple(keys))

    def remove_key(self, kid: bytes, *, now: datetime) -> TrustList:
        """Drop a compromised key: every ticket it signed becomes ``unknown_issuer``."""
        keys = tuple(k for k in self.keys if k.key.key_id != kid)
        if len(keys) == len(self.keys):
            raise TrustListError(f"no key {kid.hex()} in the trust list to remove")
        return replace(self, serial=self.serial + 1, issued=now, keys=keys)

    # -- text form and signature ----------------------------------------------------------
    def to_text(self) -> str:
        lines = [
            TRUST_HEADER,
            f"serial {self.serial}",
            f"issued {format_time(self.issued)}",
            f"max-validity-days {self.max_validity_days}",
            *(k.to_line() for k in self.keys),
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str) -> TrustList:
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines or lines[0] != TRUST_HEADER:
            raise TrustListError(f"trust list must start with the line {TRUST_HEADER!r}")
        if len(lines) < 4:
            raise TrustListError("trust list needs serial, issued and max-validity-days lines")
        serial = _int_line(lines[1], "serial", 2)
        issued = parse_time(_value_line(lines[2], "issued", 3), "trust list line 3")
        max_days = _int_line(lines[3], "max-validity-days", 4)
        if not 1 <= max_days <= 366:
            raise TrustListError("trust list line 4: max-validity-days must be 1..366")
        keys: list[IssuerKey] = []
        for n, line in enumerate(lines[4:], start=5):
            parts = line.split(" ")
            if len(parts) != 5 or parts[0] != "key":
                raise TrustListError(
                    f"trust list line {n}: expected 'key <issuer> <not-before> <not-after|-> "
                    f"<verifier key>', got {line[:60]!r}"
                )
            _, issuer, nb, na, key_text = parts
            try:
                key = VerifierKey.from_text(key_text)
            except KeyFormatError as exc:
                raise TrustListError(f"trust list line {n}: {exc}") from exc
            not_before = parse_time(nb, f"trust list line {n}")
            not_after = None if na == "-" else parse_time(na, f"trust list line {n}")
            if not_after is not None and not_after <= not_before:
                raise TrustListError(f"trust list line {n}: not-after is not after not-before")
            if any(k.key == key for k in keys):
                raise TrustListError(f"trust list line {n}: key {key_text[:40]} listed twice")
            keys.append(IssuerKey(issuer, key, not_before, not_after))
        return cls(serial, issued, tuple(keys), max_days)

    def sign(self, signers: Sequence[SignerKey]) -> str:
        """The trust list as a C2SP signed note."""
        from ledger.note import sign_note

        return sign_note(self.to_text(), list(signers))

    @classmethod
    def open(cls, note: str, roots: Iterable[VerifierKey]) -> TrustList:
        """Verify a signed trust list against the trust-root keys, then parse it."""
        from ledger.note import open_note

        roots = list(roots)
        if not roots:
            raise TrustListError(
                "no trust-root key configured, so the trust list cannot be checked; "
                "provision the bureau's trust-root verifier key"
            )
        try:
            opened = open_note(note, roots)
        except LedgerError as exc:
            raise TrustListError(f"trust list signature: {exc}") from exc
        if not opened.verified:
            names = ", ".join(r.name for r in roots)
            raise TrustListError(f"trust list is not signed by a trust-root key ({names})")
        return cls.from_text(opened.text)


def _value_line(line: str, name: str, n: int) -> str:
    prefix = name + " "
    if not line.startswith(prefix):
        raise TrustListError(f"trust list line {n}: expected '{name} ...', got {line[:40]!r}")
    return line[len(prefix):]


def _int_line(line: str, name: str, n: int) -> int:
    value = _value_line(line, name, n)
    if not re.fullmatch(r"[0-9]{1,18}", value):
        raise TrustListError(f"trust list line {n}: {name} must be a non-negative integer")
    return int(value)
