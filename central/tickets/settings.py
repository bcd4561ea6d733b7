"""Settings of the central's e-ticket layer, and where the API finds them.

The bureau's trust-root signer key signs the published issuer trust list; every gate holds its
verifier key. ``public_url`` is the base of the driver-page links printed and shown to drivers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ledger.keys import SignerKey, VerifierKey, read_signer_file, read_verifier

__all__ = ["TicketSettings", "ENV_ROOT_KEY", "ENV_PUBLIC_URL", "ENV_WITNESS_KEY"]

ENV_ROOT_KEY = "COALGATE_TICKETS_ROOT_KEY"  # path of the bureau trust-root signer key (0600)
ENV_PUBLIC_URL = "COALGATE_TICKETS_PUBLIC_URL"  # e.g. https://coal.example.gov.cn
# The central witness's verifier key (text or file): the slip check verifies the cosignature.
ENV_WITNESS_KEY = "COALGATE_TICKETS_WITNESS_KEY"


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
    def from_env(cls, env: Mapping[str, str] | None = None) -> TicketSettings:
        env = os.environ if env is None else env
        path = env.get(ENV_ROOT_KEY)
        witness = env.get(ENV_WITNESS_KEY)
        return cls(
            root_key=read_signer_file(Path(path)) if path else None,
            public_url=env.get(ENV_PUBLIC_URL, "").rstrip("/"),
            witness=read_verifier(witness) if witness else None,
        )

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)
