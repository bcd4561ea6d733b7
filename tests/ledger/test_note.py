"""C2SP signed-note keys and notes, tlog-checkpoint and tlog-cosignature."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle
from ledger.checkpoint import (
    Checkpoint,
    cosign_checkpoint,
    open_checkpoint,
    origin_for_site,
    sign_checkpoint,
    verify_cosignature,
)
from ledger.errors import CheckpointError, KeyFormatError, KeyPermissionError, NoteError
from ledger.keys import (
    SignerKey,
    VerifierKey,
    read_signer_file,
    read_verifier,
    write_signer_file,
)
from ledger.note import open_note, sign_note

from .conftest import VECTORS


def _note_vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "signed-note" / "vectors.json").read_text())


def _vector_ids() -> list[str]:
    return [v["name"] for v in _note_vectors()["vectors"]]


@pytest.mark.parametrize("name", _vector_ids())
def test_signed_note_vectors(name: str) -> None:
    vec = next(v for v in _note_vectors()["vectors"] if v["name"] == name)
    texts = vec.get("verifier_keys") or [vec["verifier_key"]]
    verifiers = [VerifierKey.from_text(t) for t in texts]
    for v, t in zip(verifiers, texts, strict=True):
        assert v.to_text() == t  # round trip byte for byte
    note = open_note(vec["signed_note"], verifiers)
    assert note.text == vec["text"]
    assert sorted(note.verified) == sorted(v.name for v in verifiers)
    if "signer_key" in vec:
        signer = SignerKey.from_text(vec["signer_key"])
        assert signer.to_text() == vec["signer_key"]
        assert signer.verifier.to_text() == vec["verifier_key"]
        assert sign_note(vec["text"], [signer]) == vec["signed_note"]


@pytest.mark.parametrize("text", _note_vectors()["bad_verifier_keys"])
def test_bad_verifier_keys_are_rejected(text: str) -> None:
    with pytest.raises(KeyFormatError):
        VerifierKey.from_text(text)


def _peter() -> tuple[dict[str, Any], VerifierKey]:
    vec = _note_vectors()["vectors"][0]
    return vec, VerifierKey.from_text(vec["verifier_key"])


def test_unknown_keys_are_ignored_but_a_known_bad_signature_fails() -> None:
    vec, peter = _peter()
    other = SignerKey.generate("stranger")
    both = sign_note(vec["text"], [SignerKey.from_text(vec["signer_key"]), other])
    assert open_note(both, [peter]).verified == ("PeterNeumann",)
    tampered = vec["signed_note"].replace("problem,", "problem;", 1)
    with pytest.raises(NoteError, match="does not verify"):
        open_note(tampered, [peter])
    with pytest.raises(NoteError, match="no signature from a known key"):
        open_note(vec["signed_note"], [other.verifier])


@pytest.mark.parametrize(
    "garbage",
    [
        "no blank line\n— PeterNeumann AAAA\n",
        "text\n\nnot a signature line\n",
        "text\n\n— PeterNeumann !!!notbase64\n",
        "text\n\n— PeterNeumann AAAA",
        "text\n\n— PeterNeumann AAE=\n",
        "text\x01\n\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZI=\n",
        "",
    ],
)
def test_notes_with_garbage_lines_are_rejected(garbage: str) -> None:
    _, peter = _peter()
    with pytest.raises(NoteError):
        open_note(garbage, [peter])


def test_wrong_size_keys_are_rejected() -> None:
    with pytest.raises(KeyFormatError, match="33 bytes"):
        VerifierKey.from_text("short+00000000+AQID")
    with pytest.raises(KeyFormatError):
        SignerKey.from_text("PRIVATE+KEY+x+00000000+AQID")
    with pytest.raises(KeyFormatError):
        SignerKey("x", b"\x00" * 31)


def test_signer_repr_never_shows_the_seed() -> None:
    key = SignerKey.generate("site-a")
    secret = key.to_text().split("+")[-1]
    assert secret not in repr(key) and secret not in str(key)
    assert key.seed.hex() not in repr(key)


def test_signer_file_is_0600_and_refused_when_readable(tmp_path: Path) -> None:
    key = SignerKey.generate("site-a")
    path = tmp_path / "site.key"
    write_signer_file(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_signer_file(path).to_text() == key.to_text()
    with pytest.raises(KeyPermissionError, match="already exists"):
        write_signer_file(path, key)
    os.chmod(path, 0o644)
    with pytest.raises(KeyPermissionError, match="chmod 600"):
        read_signer_file(path)


def test_read_verifier_from_text_or_file(tmp_path: Path) -> None:
    key = SignerKey.generate("site-a")
    text = key.verifier.to_text()
    assert read_verifier(text) == key.verifier
    path = tmp_path / "site.pub"
    path.write_text(text + "\n")
    assert read_verifier(path) == key.verifier
    secret = tmp_path / "secret"
    secret.write_text(key.to_text())
    with pytest.raises(KeyFormatError, match="private"):
        read_verifier(secret)


def _checkpoint(size: int) -> Checkpoint:
    hashes = [merkle.leaf_hash(bytes([i])) for i in range(size)]
    return Checkpoint(origin_for_site("mine-a"), size, merkle.root(hashes))


def test_checkpoint_round_trip_and_signature() -> None:
    site = SignerKey.generate("coalgate/mine-a")
    cp = _checkpoint(5)
    assert cp.to_text().splitlines()[:2] == ["coalgate/mine-a", "5"]
    assert Checkpoint.from_text(cp.to_text()) == cp
    note = sign_checkpoint(cp, site)
    assert open_checkpoint(note, site.verifier) == cp
    forged = note.replace("\n5\n", "\n6\n", 1)
    with pytest.raises(CheckpointError):
        open_checkpoint(forged, site.verifier)
    with pytest.raises(CheckpointError):
        open_checkpoint(note, SignerKey.generate("coalgate/mine-a").verifier)


@pytest.mark.parametrize(
    "text", ["coalgate/x\n5\n", "coalgate/x\n05\n" + "A" * 43 + "=\n", "coalgate/x\n1\n!!\n", "x"]
)
def test_malformed_checkpoints_are_rejected(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_text(text)


def test_cosignature_round_trip_and_tamper() -> None:
    site = SignerKey.generate("coalgate/mine-a")
    witness = SignerKey.generate("central.example/witness")
    note = sign_checkpoint(_checkpoint(7), site)
    cosigned = cosign_checkpoint(note, witness, 1_790_000_000)
    assert verify_cosignature(cosigned, witness.verifier) == 1_790_000_000
    # The site signature still opens: the witness line is an unknown key to the site verifier.
    assert open_checkpoint(cosigned, site.verifier).size == 7
    # The cosignature uses key type 0x04, so it is not an ordinary note signature by the witness.
    with pytest.raises(NoteError):
        open_note(cosigned, [witness.verifier])
    with pytest.raises(CheckpointError, match="no cosignature"):
        verify_cosignature(note, witness.verifier)
    other_body = sign_checkpoint(_checkpoint(8), site)
    spliced = other_body + cosigned.splitlines(keepends=True)[-1]
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_cosignature(spliced, witness.verifier)
