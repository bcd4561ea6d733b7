"""Where the central keeps ticket issuer signing keys: never in PostgreSQL.

The database holds each key's id, enterprise, verifier (public) key and validity; the private
half lives in an ``IssuerKeyStore``:

* ``FileKeyStore`` — one file per key, ``<dir>/<kid>.key``, mode 0600 (``[tickets]
  issuer_key_dir``), the same format as every other coalgate signer key file;
* ``EncryptedFileKeyStore`` — the same files encrypted (scrypt + AES-256-GCM) under a
  passphrase read from a file or the environment (``[tickets] issuer_key_passphrase_file`` /
  ``issuer_key_passphrase_env``), for disks that are backed up or shared;
* any object with ``put``/``get``/``where`` — the hook for a KMS or HSM (sign-in-KMS needs a
  signer object; this interface hands out the key, so it suits KMS "envelope" key storage).

A database from before this change still holds private keys in ``ticket_issuer_keys.signer_key``;
``move_db_keys_to_store`` moves them into the store and clears the column (the central does it
on start and on first use; ``coalgate central tickets migrate-issuer-keys`` does it at once).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Protocol

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from central.tickets.errors import CentralTicketError
from ledger.errors import LedgerError
from ledger.keys import SignerKey, read_signer_file
from ledger.private_file import is_private, write_private

__all__ = [
    "DEFAULT_KEY_DIR",
    "KEY_DIR_ENV",
    "EncryptedFileKeyStore",
    "FileKeyStore",
    "IssuerKeyStore",
    "IssuerKeyStoreError",
    "default_store",
    "move_db_keys_to_store",
]

# Used when no store is configured (library callers, tests): like [witness] key_file's default.
DEFAULT_KEY_DIR = Path("var/central/issuer-keys")
KEY_DIR_ENV = "COALGATE_ISSUER_KEY_DIR"
_MAGIC = b"CGK1"  # encrypted key file: magic | salt(16) | nonce(12) | AES-GCM(key text)


class IssuerKeyStoreError(CentralTicketError):
    """An issuer key could not be stored or read (names the key, the store and the fix)."""


class IssuerKeyStore(Protocol):
    def put(self, kid: str, key: SignerKey) -> None: ...

    def get(self, kid: str) -> SignerKey: ...

    def where(self) -> str: ...


def _check_kid(kid: str) -> str:
    if len(kid) != 8 or any(c not in "0123456789abcdef" for c in kid):
        raise IssuerKeyStoreError(f"issuer key id {kid!r} is not 8 lowercase hex digits")
    return kid


class FileKeyStore:
    """One 0600 signer key file per issuer key in ``directory`` (created 0700)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def where(self) -> str:
        return str(self.directory)

    def path(self, kid: str) -> Path:
        return self.directory / f"{_check_kid(kid)}.key"

    def _encode(self, key: SignerKey) -> bytes:
        return (key.to_text() + "\n").encode()

    def _decode(self, path: Path) -> SignerKey:
        return read_signer_file(path)

    def put(self, kid: str, key: SignerKey) -> None:
        path = self.path(kid)
        if path.exists():
            # the same key again (a migration run twice) is fine; another one never replaces it
            if self.get(kid).to_text() == key.to_text():
                return
            raise IssuerKeyStoreError(f"{path}: holds another key for kid {kid}; not replaced")
        try:
            write_private(path, self._encode(key), overwrite=False)
        except OSError as exc:
            raise IssuerKeyStoreError(
                f"cannot write issuer key {kid} to {path} ({exc.strerror}); make "
                f"{self.directory} writable by the central's user, mode 0700"
            ) from None

    def get(self, kid: str) -> SignerKey:
        path = self.path(kid)
        if not path.exists():
            raise IssuerKeyStoreError(
                f"issuer key {kid} is not in {self.directory} ({path} missing): restore it "
                "from the key backup, or rotate the enterprise's key (POST "
                "/api/v1/tickets/issuer-keys) so new tickets are signed with a new one"
            )
        if not is_private(path):
            raise IssuerKeyStoreError(f"{path}: readable by others; run 'chmod 600 {path}' "
                                      "(and rotate the key if others could read it)")
        try:
            return self._decode(path)
        except LedgerError as exc:
            raise IssuerKeyStoreError(f"issuer key {kid}: {exc}") from None


class EncryptedFileKeyStore(FileKeyStore):
    """Like FileKeyStore, each file encrypted with a key derived from ``passphrase``."""

    def __init__(self, directory: Path, passphrase: bytes) -> None:
        super().__init__(directory)
        if len(passphrase) < 12:
            raise IssuerKeyStoreError("the issuer key passphrase must be at least 12 bytes")
        self._passphrase = passphrase
        self._derived: dict[bytes, bytes] = {}

    def _key(self, salt: bytes) -> bytes:
        if salt not in self._derived:
            self._derived[salt] = Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(
                self._passphrase)
        return self._derived[salt]

    def _encode(self, key: SignerKey) -> bytes:
        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(self._key(salt)).encrypt(nonce, key.to_text().encode(), _MAGIC)
        return base64.b64encode(_MAGIC + salt + nonce + sealed) + b"\n"

    def _decode(self, path: Path) -> SignerKey:
        raw = base64.b64decode(path.read_bytes().strip())
        if not raw.startswith(_MAGIC):
            raise IssuerKeyStoreError(f"{path}: not an encrypted issuer key file")
        salt, nonce, sealed = raw[4:20], raw[20:32], raw[32:]
        try:
            text = AESGCM(self._key(salt)).decrypt(nonce, sealed, _MAGIC)
        except InvalidTag:
            raise IssuerKeyStoreError(
                f"{path}: cannot decrypt with the configured passphrase (wrong passphrase, "
                "or the file was changed)") from None
        return SignerKey.from_text(text.decode())


def default_store() -> FileKeyStore:
    """``$COALGATE_ISSUER_KEY_DIR`` or var/central/issuer-keys (relative to the cwd)."""
    return FileKeyStore(Path(os.environ.get(KEY_DIR_ENV) or DEFAULT_KEY_DIR))


def move_db_keys_to_store(conn: psycopg.Connection[Any], store: IssuerKeyStore) -> int:
    """Move every private key still in ``ticket_issuer_keys.signer_key`` into ``store`` and
    clear the column; returns how many were moved. Each key is written (and read back) before
    its column is cleared, so an interruption never loses one."""
    moved = 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ticket_issuer_keys'))")
        rows = conn.execute("SELECT kid, signer_key FROM ticket_issuer_keys"
                            " WHERE signer_key IS NOT NULL").fetchall()
        for kid, text in rows:
            key = SignerKey.from_text(text)
            store.put(kid, key)
            if store.get(kid).to_text() != key.to_text():
                raise IssuerKeyStoreError(f"issuer key {kid} did not read back from "
                                          f"{store.where()}; nothing cleared")
            conn.execute("UPDATE ticket_issuer_keys SET signer_key = NULL WHERE kid = %s",
                         (kid,))
            moved += 1
    return moved
