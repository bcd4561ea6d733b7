"""The central as a witness of each site's log (C2SP tlog-checkpoint + tlog-cosignature).

Pure: ``witness_checkpoint`` takes a site's signed checkpoint note, what the central holds of
that site (its verified log through a Merkle ``NodeReader``, the latest cosigned checkpoint) and
the witness key, and decides. Because the central stores every verified leaf, it checks the
checkpoint's root against its own tree at that size *and* checks an RFC 6962 consistency proof
from the last checkpoint it cosigned, so a site that signs two inconsistent checkpoints is
caught whichever one arrives first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from central.ingest.core import AlarmDraft
from ledger.checkpoint import Checkpoint, cosign_checkpoint, open_checkpoint, origin_for_site
from ledger.errors import LedgerError, ProofError
from ledger.keys import SignerKey, VerifierKey, read_signer_file, write_signer_file
from ledger.merkle import NodeReader, consistency_proof_at, root_at, verify_consistency

__all__ = [
    "StoredCheckpoint",
    "WitnessDecision",
    "witness_checkpoint",
    "load_or_create_witness_key",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    cosigned: str


@dataclass(frozen=True)
class WitnessDecision:
    """``status``: cosigned (new, store it) | known (already cosigned) | pending (the central
    has not yet verified entries up to its size; the edge sends it again later) | refused."""

    status: str
    checkpoint: Checkpoint | None = None
    cosigned: str | None = None
    alarm: AlarmDraft | None = None
    message: str = ""


def _refuse(reason: str, message: str, code: str = "tamper_checkpoint") -> WitnessDecision:
    alarm = AlarmDraft(code, "critical", None, {"reason": reason, "message": message})
    return WitnessDecision("refused", alarm=alarm, message=message)


def witness_checkpoint(
    note: str,
    *,
    site: str,
    verifier: VerifierKey,
    witness_key: SignerKey,
    verified_size: int,
    latest: StoredCheckpoint | None,
    same_size: StoredCheckpoint | None,
    node: NodeReader,
    now: int,
) -> WitnessDecision:
    """Verify a site checkpoint and cosign it; ``now`` is the cosignature's UNIX timestamp."""
    try:
        cp = open_checkpoint(note, verifier)
    except LedgerError as exc:
        return _refuse("bad_checkpoint", f"checkpoint from site {site!r} refused: {exc}")
    want_origin = origin_for_site(site)
    if cp.origin != want_origin:
        return _refuse(
            "wrong_origin",
            f"checkpoint origin {cp.origin!r} arrived on the topic of site {site!r} "
            f"(expected {want_origin!r})",
            code="tamper_topic",
        )
    if cp.size > verified_size:
        return WitnessDecision(
            "pending",
            checkpoint=cp,
            message=f"checkpoint size {cp.size} is beyond the {verified_size} entries verified",
        )
    if same_size is not None and same_size.root == cp.root_hash:
        return WitnessDecision("known", checkpoint=cp, cosigned=same_size.cosigned)
    ours = root_at(cp.size, node)
    if ours != cp.root_hash:
        return _refuse(
            "root_mismatch",
            f"site {site!r} signed a checkpoint of size {cp.size} with root "
            f"{cp.root_hash.hex()[:16]}… but the verified log has root {ours.hex()[:16]}…",
        )
    if latest is not None and 0 < latest.size < cp.size:
        try:
            proof = consistency_proof_at(latest.size, cp.size, node)
            verify_consistency(latest.size, cp.size, latest.root, cp.root_hash, proof)
        except ProofError as exc:
            return _refuse(
                "inconsistent",
                f"site {site!r} checkpoint {cp.size} is not consistent with the cosigned "
                f"checkpoint {latest.size}: {exc}",
            )
    cosigned = cosign_checkpoint(note, witness_key, now)
    return WitnessDecision("cosigned", checkpoint=cp, cosigned=cosigned)


def load_or_create_witness_key(path: Path, name: str) -> SignerKey:
    """Read the witness signer file; create it (mode 0600) on first start."""
    if path.exists():
        return read_signer_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = SignerKey.generate(name)
    write_signer_file(path, key)
    log.warning("created a new witness key %s in %s", key.verifier.to_text(), path)
    return key
