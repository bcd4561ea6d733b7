"""Settings of the central's e-ticket layer, from the ``[tickets]`` table of the central config.

The bureau's trust-root signer key signs the published issuer trust list; every gate holds its
verifier key. ``public_url`` is the base of the driver-page links printed and shown to drivers.
The central TOML (central.settings, with its ``COALGATE_CENTRAL__TICKETS__*`` overrides) is the
one source: ``TicketSettings.from_config`` reads the key files it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from central.settings import Settings, SettingsError
from ledger.errors import KeyPermissionError, LedgerError
from ledger.keys import SignerKey, VerifierKey, read_signer_file, read_verifier

__all__ = ["TicketSettings"]


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class TicketSettings:
    root_key: SignerKey | None = None
    public_url: str = ""
    default_validity: timedelta = timedelta(hours=48)
    max_validity_days: int = 31  # written into the trust list; gates refuse longer tickets
    witness: VerifierKey | None = None
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
            root_key=root,
            public_url=section.public_url.rstrip("/"),
            default_validity=timedelta(hours=section.default_validity_h),
            max_validity_days=section.max_validity_days,
            witness=witness,
        )

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)
