"""RFC 6962 / RFC 9162 Merkle tree over entry hashes.

The leaves of the tree are the entry hashes themselves (already ``SHA-256(0x00 || leaf)``);
they are not hashed again. Interior nodes are ``SHA-256(0x01 || left || right)``.

Two forms of the same algorithms:

* node-store form — a ``NodeReader(level, index)`` returns the hash of the complete subtree
  covering leaves ``[index·2^level, (index+1)·2^level)``. A store keeps those hashes as leaves
  are appended (``nodes_after_append``), so roots and proofs at any size take O(log n) reads.
  The SQLite store and the central's PostgreSQL both use this form.
* list form — over a Python list of leaf hashes, for small trees and tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ledger.errors import ProofError

__all__ = [
    "HASH_SIZE",
    "EMPTY_ROOT",
    "NodeReader",
    "leaf_hash",
    "node_hash",
    "nodes_after_append",
    "root_at",
    "inclusion_proof_at",
    "consistency_proof_at",
    "root",
    "inclusion_proof",
    "consistency_proof",
    "verify_inclusion",
    "verify_consistency",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"  # RFC 6962 §2.1
_NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeReader = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)`` (RFC 6962 §2.1)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 6962 §2.1)."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# ---------------------------------------------------------------------------- node-store form


def nodes_after_append(index: int, leaf: bytes, node: NodeReader) -> list[tuple[int, int, bytes]]:
    """The complete subtrees that leaf ``index`` completes, as ``(level, index, hash)``.

    ``node`` must be able to read the subtrees completed by earlier leaves (the left siblings).
    """
    out = [(0, index, leaf)]
    level, idx, h = 0, index, leaf
    while idx & 1:  # a right child completes its parent
        h = node_hash(node(level, idx - 1), h)
        level, idx = level + 1, idx >> 1
        out.append((level, idx, h))
    return out


def _range_hash(start: int, end: int, node: NodeReader) -> bytes:
    """MTH of leaves [start, end) where ``start`` is aligned (RFC 6962 recursion shape)."""
    n = end - start
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(_range_hash(start, start + k, node), _range_hash(start + k, end, node))


def root_at(size: int, node: NodeReader) -> bytes:
    """The tree head (MTH) of the first ``size`` leaves."""
    if size < 0:
        raise ProofError(f"tree size {size} is negative")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, node)


def inclusion_proof_at(index: int, size: int, node: NodeReader) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree of ``size`` leaves (RFC 6962 §2.1.1)."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    # Walk from the root down; record the sibling hash at each split, then reverse.
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            proof.append(_range_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(_range_hash(start, start + k, node))
            start = start + k
    proof.reverse()
    return proof


def consistency_proof_at(m: int, n: int, node: NodeReader) -> list[bytes]:
    """Proof that the tree of size ``m`` is a prefix of the tree of size ``n`` (§2.1.2)."""
    if not 0 < m <= n:
        raise ProofError(f"no consistency proof from size {m} to size {n} (need 0 < m ≤ n)")
    proof: list[bytes] = []
    start, end, complete = 0, n, True
    mm = m
    while mm != end - start:
        k = _split(end - start)
        if mm <= k:
            proof.append(_range_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(_range_hash(start, start + k, node))
            start, mm, complete = start + k, mm - k, False
    if not complete:
        proof.append(_range_hash(start, end, node))
    proof.reverse()
    return proof


# ---------------------------------------------------------------------------------- list form


def _list_reader(hashes: Sequence[bytes]) -> NodeReader:
    cache: dict[tuple[int, int], bytes] = {}

    def node(level: int, index: int) -> bytes:
        if level == 0:
            return hashes[index]
        key = (level, index)
        if key not in cache:
            cache[key] = node_hash(node(level - 1, 2 * index), node(level - 1, 2 * index + 1))
        return cache[key]

    return node


def root(hashes: Sequence[bytes]) -> bytes:
    return root_at(len(hashes), _list_reader(hashes))


def inclusion_proof(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    return inclusion_proof_at(index, len(hashes), _list_reader(hashes))


def consistency_proof(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    return consistency_proof_at(m, len(hashes), _list_reader(hashes))


# ---------------------------------------------------------------------------------- verifiers


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    for i, p in enumerate(proof):
        if not isinstance(p, bytes) or len(p) != HASH_SIZE:
            raise ProofError(f"{what} proof element {i} is not a {HASH_SIZE}-byte hash")


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root_hash: bytes
) -> None:
    """RFC 9162 §2.1.3.2. Raises ``ProofError`` unless ``leaf`` is at ``index`` under ``root``."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"leaf hash is {len(leaf)} bytes, expected {HASH_SIZE}")
    if len(root_hash) != HASH_SIZE:
        raise ProofError(f"root hash is {len(root_hash)} bytes, expected {HASH_SIZE}")
    _check_hashes(proof, "inclusion")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"inclusion proof is too short ({len(proof)} hashes)")
    if r != root_hash:
        raise ProofError(f"inclusion proof for leaf {index} in size {size} does not match the root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. Raises ``ProofError`` unless tree ``size1`` is a prefix of ``size2``.

    A proof from the empty tree proves nothing, so ``size1 == 0`` is refused; a caller meeting
    a log for the first time has nothing to be consistent with and should skip the check.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"tree size {size2} is smaller than the earlier size {size1}")
    if size1 == 0:
        raise ProofError("consistency with the empty tree (size 0) proves nothing; skip it")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal, so the consistency proof must be empty")
        if root1 != root2:
            raise ProofError(f"two different roots for the same size {size1}: the log forked")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to size {size2}")
    if len(root1) != HASH_SIZE or len(root2) != HASH_SIZE:
        raise ProofError(f"root hashes must be {HASH_SIZE} bytes")
    _check_hashes(proof, "consistency")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the first node
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"consistency proof is too short ({len(proof)} hashes)")
    if fr != root1:
        raise ProofError(f"consistency proof does not reproduce the size-{size1} root")
    if sr != root2:
        raise ProofError(f"consistency proof does not reproduce the size-{size2} root")
