"""Pure verification of a ledger batch against what the central already holds for the site.

``check_batch`` takes the site's verified state, the batch, the topic's site and the stored
hashes for any seqs the batch repeats, and returns what to store, what to refuse and alarm,
and whether to ask for a resend. No I/O, no clock: the worker supplies the state and applies
the outcome in one transaction.

Order of checks per entry (the first failure stops the batch; the prefix before it stands):
1. leaf parses and is exactly canonical JCS      → else ``tamper_signature`` (malformed)
2. the entry's ``site`` is the topic's site       → else ``tamper_topic``
3. seq below the next expected: same hash → duplicate (ignored); different hash and a valid
   site signature → ``tamper_fork``; invalid signature → ``tamper_signature``
4. seq above the next expected → gap: stop, ask for a resend from the next expected seq
5. seq equal to the next expected: ``ledger.entry.verify_signed_entry`` (prev chain, signature);
   a validly signed entry whose ``prev`` is not our head is a fork.
(The normal case — the next entry — is tried first with one ``verify_signed_entry`` call; the
checks above classify only the entries it refuses.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ledger.entry import Entry, SignedEntry, verify_signed_entry
from ledger.errors import ChainError, EntryError, SignatureError
from ledger.keys import VerifierKey

__all__ = ["SiteView", "VerifiedEntry", "AlarmDraft", "BatchOutcome", "check_batch"]


@dataclass(frozen=True)
class SiteView:
    """What the central knows of a site's log: highest contiguous verified seq and its hash."""

    site: str
    verifier: VerifierKey
    verified_seq: int  # -1 when nothing is stored yet
    head_hash: bytes  # ZERO_HASH when nothing is stored yet

    @property
    def next_seq(self) -> int:
        return self.verified_seq + 1


@dataclass(frozen=True)
class VerifiedEntry:
    signed: SignedEntry
    entry: Entry
    ts: datetime

    @property
    def seq(self) -> int:
        return self.entry.seq

    @property
    def hash(self) -> bytes:
        return self.signed.hash


@dataclass(frozen=True)
class AlarmDraft:
    code: str
    severity: str
    seq: int | None
    detail: dict[str, Any]
    txn: str | None = None


@dataclass
class BatchOutcome:
    accepted: list[VerifiedEntry] = field(default_factory=list)
    duplicates: int = 0
    alarms: list[AlarmDraft] = field(default_factory=list)
    # (reason, detail) of the entry that stopped the batch, if any: recorded as rejected.
    rejected: tuple[str, str] | None = None
    resend_from: int | None = None

    @property
    def verified_seq_after(self) -> int | None:
        return self.accepted[-1].seq if self.accepted else None


def _ts(text: str) -> datetime:
    # Already validated by Entry (RFC 3339 UTC with 'Z'); fromisoformat is the fast C parser.
    return datetime.fromisoformat(text[:-1] + "+00:00")


def _seq_hint(se: SignedEntry, fallback: int) -> int:
    try:
        return se.entry.seq
    except EntryError:
        return fallback


def check_batch(
    view: SiteView,
    topic_site: str,
    entries: Sequence[SignedEntry],
    known: Mapping[int, bytes],
) -> BatchOutcome:
    """Classify each entry of a batch in order; see the module docstring for the rules.

    ``known`` maps seq → stored entry hash for every seq ≤ ``view.verified_seq`` in the batch
    (the worker reads them for the range the batch's ``from`` announces).
    """
    out = BatchOutcome()
    expected = view.next_seq
    head = view.head_hash

    def refuse(code: str, reason: str, detail: str, seq: int | None) -> BatchOutcome:
        out.alarms.append(
            AlarmDraft(code, "critical", seq, {"reason": reason, "message": detail})
        )
        out.rejected = (reason, detail)
        return out

    for position, se in enumerate(entries):
        # Fast path, the normal case: the next entry in the chain. One parse, one verify.
        try:
            entry = verify_signed_entry(se, view.verifier, site=topic_site, seq=expected,
                                        prev=head)
        except SignatureError as exc:  # site, seq and prev matched: the signature is wrong
            return refuse("tamper_signature", "bad_signature", str(exc), expected)
        except (ChainError, EntryError):
            entry = None
        if entry is not None:
            out.accepted.append(VerifiedEntry(se, entry, _ts(entry.ts)))
            expected += 1
            head = se.hash
            continue
        # Slow path: classify why it is not the next entry.
        hint = _seq_hint(se, expected + position)
        try:
            entry = se.entry
        except EntryError as exc:
            return refuse("tamper_signature", "malformed_entry", str(exc), hint)
        if entry.site != topic_site:
            return refuse(
                "tamper_topic",
                "wrong_site",
                f"seq {entry.seq}: entry names site {entry.site!r} but arrived on the topic "
                f"of site {topic_site!r}",
                entry.seq,
            )
        if entry.seq < expected:
            stored = known.get(entry.seq)
            if stored is None:  # the batch's "from" does not match its entries' seqs
                out.rejected = ("bad_envelope", f"batch 'from' does not match seq {entry.seq}")
                return out
            if stored == se.hash:
                out.duplicates += 1
                continue
            if view.verifier.verify(se.leaf, se.sig):
                return refuse(
                    "tamper_fork",
                    "fork",
                    f"seq {entry.seq}: a validly signed entry differs from the one stored "
                    f"(stored hash {stored.hex()[:16]}…, received {se.hash.hex()[:16]}…); "
                    "the site has signed two different histories",
                    entry.seq,
                )
            return refuse(
                "tamper_signature",
                "bad_signature",
                f"seq {entry.seq}: signature does not verify with the enrolled key "
                f"{view.verifier.name} (and the entry differs from the stored one)",
                entry.seq,
            )
        if entry.seq > expected:
            out.resend_from = expected
            return out
        # seq == expected but prev is not our head
        message = (
            f"seq {entry.seq}: prev does not match the stored hash of seq {entry.seq - 1} "
            "(the site's log was rewritten)"
        )
        if view.verifier.verify(se.leaf, se.sig):
            return refuse("tamper_fork", "fork", message, entry.seq)
        return refuse("tamper_signature", "bad_signature", message, entry.seq)
    return out
