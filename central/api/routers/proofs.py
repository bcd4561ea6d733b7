"""Ledger proofs: any stored entry with its inclusion proof in the latest cosigned checkpoint."""

from __future__ import annotations

import base64

from fastapi import APIRouter, HTTPException, status

from central.api.deps import Conn, Reader, check_site_visible
from central.api.schemas import ErrorOut, ProofOut
from central.ingest.store import DbNodes
from ledger.errors import ProofError
from ledger.merkle import inclusion_proof_at, verify_inclusion

router = APIRouter(tags=["proofs"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@router.get("/sites/{site}/entries/{seq}/proof", response_model=ProofOut,
            responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut},
                       409: {"model": ErrorOut}},
            summary="Inclusion proof of an entry against the latest cosigned checkpoint")
def entry_proof(site: str, seq: int, conn: Conn, user: Reader) -> ProofOut:
    """Everything a third party needs to check, offline, that entry `seq` of `site` is in the
    log the site committed to and the central witnessed. 409 while no cosigned checkpoint
    covers the entry yet (the gate sends one every few minutes)."""
    check_site_visible(conn, user, site)
    if seq < 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"seq must be ≥ 0, got {seq}")
    with conn.cursor() as cur:
        entry = cur.execute(
            "SELECT e.leaf, e.hash, e.sig, s.verifier_key FROM entries e"
            " JOIN sites s ON s.id = e.site WHERE e.site = %s AND e.seq = %s",
            (site, seq),
        ).fetchone()
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND,
                                f"site {site!r} has no verified entry {seq} stored yet")
        cp = cur.execute(
            "SELECT c.size, c.root, c.cosigned FROM checkpoints c"
            " JOIN site_state st ON st.site = c.site AND st.checkpoint_size = c.size"
            " WHERE c.site = %s",
            (site,),
        ).fetchone()
        if cp is None or cp[0] <= seq:
            covered = f"entries 0–{cp[0] - 1}" if cp else "no entries"
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"entry {seq} is stored but not yet in a cosigned checkpoint (the latest covers "
                f"{covered}); retry after the site's next checkpoint",
            )
        size, root, cosigned = cp[0], bytes(cp[1]), cp[2]
        leaf_hash = bytes(entry[1])
        proof = inclusion_proof_at(seq, size, DbNodes(cur, site))
    try:
        # Fail closed: never hand out a proof that does not verify.
        verify_inclusion(seq, size, leaf_hash, proof, root)
    except ProofError as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR,
                            f"stored Merkle nodes of {site!r} do not prove entry {seq}: {exc}; "
                            "the central's copy is damaged") from None
    return ProofOut(
        site=site, seq=seq, leaf=bytes(entry[0]).decode("utf-8"), entry_hash=_b64(leaf_hash),
        signature=_b64(bytes(entry[2])), leaf_index=seq, tree_size=size, root_hash=_b64(root),
        inclusion_proof=[_b64(h) for h in proof], checkpoint=cosigned, verifier_key=entry[3],
    )
