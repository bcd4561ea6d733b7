"""Settings of the central's e-ticket layer, from the ``[tickets]`` table of the central config.

The bureau's trust-root signer key signs the published issuer trust list; every gate holds its
verifier key. ``public_url`` is the base of the driver-page links printed and shown to drivers.
The central TOML (central.settings, with its ``COALGATE_CENTRAL__TICKETS__*`` overrides) is the
one source: ``TicketSettings.from_config`` reads the key files it names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from central.settings import Settings, SettingsError, TicketsSection
from central.tickets.keystore import (
    EncryptedFileKeyStore,
    FileKeyStore,
    IssuerKeyStore,
    IssuerKeyStoreError,
    default_store,
)
from edge_agent.sync.mqtt import MqttConfigError, read_password_file
from ledger.errors import KeyPermissionError, LedgerError
from ledger.keys import SignerKey, VerifierKey, read_signer_file, read_verifier

__all__ = ["TicketSettings"]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _issuer_store(section: TicketsSection, where: str) -> IssuerKeyStore:
    directory = section.issuer_key_dir or default_store().directory
    if section.issuer_key_passphrase_file is None and section.issuer_key_passphrase_env is None:
        return FileKeyStore(directory)
    if section.issuer_key_passphrase_file is not None:
        try:
            phrase = read_password_file(section.issuer_key_passphrase_file,
                                        where=f"{where}: tickets.issuer_key_passphrase_file")
        except MqttConfigError as exc:
            raise SettingsError(str(exc).replace("broker password", "issuer key passphrase")
                                ) from None
    else:
        name = section.issuer_key_passphrase_env or ""
        phrase = os.environ.get(name, "")
        if not phrase:
            raise SettingsError(f"{where}: tickets.issuer_key_passphrase_env: the environment "
                                f"variable {name} is not set; export the passphrase in it")
    try:
        return EncryptedFileKeyStore(directory, phrase.encode())
    except IssuerKeyStoreError as exc:
        raise SettingsError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class TicketSettings:
    root_key: SignerKey | None = None
    public_url: str = ""
    default_validity: timedelta = timedelta(hours=48)
    max_validity_days: int = 31  # written into the trust list; gates refuse longer tickets
    witness: VerifierKey | None = None
    # Where issuer private keys live (never the database): central.tickets.keystore.
    issuer_keys: IssuerKeyStore = field(default_factory=default_store, compare=False)
    clock: Callable[[], datetime] = field(default=_now, compare=False)

    @classmethod
    def from_config(cls, settings: Settings, *, source: Path | str | None = None
                    ) -> TicketSettings:
        """``[tickets]`` of the central config, with its key files read.

        The witness verifier is ``[tickets] witness_verifier_file`` if set, else derived from
        the ``[witness] key_file`` signer when this machine holds it, else None (the slip check
        then skips the cosignature). ``source`` is the config file, named in errors.

        Raises SettingsError naming the file, the key and the fix.
        """
        section = settings.tickets
        where = str(source) if source is not None else "central settings (no config file)"
        root = witness = None
        if section.root_key_file is not None:
            try:
                root = read_signer_file(section.root_key_file)
            except KeyPermissionError as exc:  # its message already says which chmod to run
                raise SettingsError(f"{where}: tickets.root_key_file: {exc}") from None
            except LedgerError as exc:
                raise SettingsError(
                    f"{where}: tickets.root_key_file: {exc}; point it at the bureau's "
                    "trust-root signer key, or create one with `coalgate ledger keygen "
                    f"--name bureau-root --out {section.root_key_file}`"
                ) from None
        if section.witness_verifier_file is not None:
            try:
                witness = read_verifier(section.witness_verifier_file)
            except LedgerError as exc:
                raise SettingsError(
                    f"{where}: tickets.witness_verifier_file: {exc}; point it at a file "
                    "holding the witness's verifier key (the line `coalgate ledger keygen` "
                    "printed for [witness] key_file), or leave it out on the machine that "
                    "holds [witness] key_file"
                ) from None
        elif settings.ingest.witness_key_file.exists():
            witness_file = settings.ingest.witness_key_file
            try:
                witness = read_signer_file(witness_file).verifier
            except LedgerError as exc:
                raise SettingsError(
                    f"{where}: witness.key_file: {exc}; or set [tickets] "
                    "witness_verifier_file to a file with the witness's verifier key"
                ) from None
        return cls(
            issuer_keys=_issuer_store(section, where),
            root_key=root,
            public_url=section.public_url.rstrip("/"),
            default_validity=timedelta(hours=section.default_validity_h),
            max_validity_days=section.max_validity_days,
            witness=witness,
        )

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)
