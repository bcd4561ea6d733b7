"""RFC 6962/9162 Merkle tree: known-answer vectors and properties over random sizes."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import ProofError

from .conftest import VECTORS


def _b(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / "merkle" / kind).rglob("*.json"))


def test_vector_directories_are_present(vectors: Path) -> None:
    assert len(_cases("inclusion")) > 50
    assert len(_cases("consistency")) > 50


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (case["leafIdx"], case["treeSize"], _b(case["leafHash"]), proof, _b(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], _b(case["root1"]), _b(case["root2"]), proof)
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _reference_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH written as the plain recursion, to check the node-store form."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return merkle.node_hash(_reference_root(hashes[:k]), _reference_root(hashes[k:]))


def test_rfc6962_known_root_for_eight_leaves() -> None:
    # The vectors' 8-leaf tree: leaves are the RFC 6962 test inputs, root from inclusion/1.
    inputs = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]
    hashes = [merkle.leaf_hash(bytes.fromhex(h)) for h in inputs]
    want = json.loads((VECTORS / "merkle/inclusion/1/happy-path.json").read_text())["root"]
    assert merkle.root(hashes) == _b(want)


def _store(hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    nodes: dict[tuple[int, int], bytes] = {}
    for i, h in enumerate(hashes):
        for level, idx, value in merkle.nodes_after_append(i, h, lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, idx)] = value
    return nodes


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_every_generated_proof_verifies_and_tampering_is_rejected(n: int, data: st.DataObject):
    hashes = _leaves(n)
    nodes = _store(hashes)

    def reader(level: int, idx: int) -> bytes:
        return nodes[(level, idx)]

    size = data.draw(st.integers(min_value=1, max_value=n), label="size")
    root = merkle.root_at(size, reader)
    assert root == _reference_root(hashes[:size]) == merkle.root(hashes[:size])

    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    proof = merkle.inclusion_proof_at(index, size, reader)
    assert proof == merkle.inclusion_proof(index, hashes[:size])
    merkle.verify_inclusion(index, size, hashes[index], proof, root)
    # A wrong size: checked against the genuine root of that size, the proof must fail.
    other_size = data.draw(st.integers(min_value=index + 1, max_value=n + 1), label="other")
    if other_size != size:
        other_root = merkle.root(_leaves(other_size))
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, other_size, hashes[index], proof, other_root)
    if size > 1:
        other = (index + 1) % size
        with pytest.raises(ProofError):
            merkle.verify_inclusion(other, size, hashes[index], proof, root)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = list(proof)
        bad[i] = _flip(bad[i], bit)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(index, size, hashes[index], bad, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(index, size, hashes[index], proof, _flip(root, 7))

    old = data.draw(st.integers(min_value=1, max_value=size), label="old")
    cproof = merkle.consistency_proof_at(old, size, reader)
    assert cproof == merkle.consistency_proof(old, hashes[:size])
    old_root = merkle.root_at(old, reader)
    merkle.verify_consistency(old, size, old_root, root, cproof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(old, size, _flip(old_root, 3), root, cproof)
    if cproof:
        bad = list(cproof)
        bad[-1] = _flip(bad[-1], 200)
        with pytest.raises(ProofError):
            merkle.verify_consistency(old, size, old_root, root, bad)
        if old > 1:
            with pytest.raises(ProofError):
                merkle.verify_consistency(old - 1, size, old_root, root, cproof)
        with pytest.raises(ProofError):
            new_root = merkle.root(_leaves(size + 1))
            merkle.verify_consistency(old, size + 1, old_root, new_root, cproof)


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def test_reads_are_logarithmic() -> None:
    hashes = _leaves(1000)
    nodes = _store(hashes)
    reads = 0

    def reader(level: int, idx: int) -> bytes:
        nonlocal reads
        reads += 1
        return nodes[(level, idx)]

    merkle.inclusion_proof_at(777, 999, reader)
    assert reads <= 2 * 10 + 2
    reads = 0
    merkle.root_at(999, reader)
    assert reads <= 10


def test_empty_tree_and_bad_arguments() -> None:
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    with pytest.raises(ProofError):
        merkle.inclusion_proof(0, [])
    with pytest.raises(ProofError):
        merkle.consistency_proof(0, _leaves(3))
    with pytest.raises(ProofError):
        merkle.consistency_proof(4, _leaves(3))
