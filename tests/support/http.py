"""What a test's HTTP request to the central API carries besides its body."""

from __future__ import annotations

__all__ = ["auth"]


def auth(tok: str) -> dict[str, str]:
    """The request headers that present API token ``tok`` (a bearer token)."""
    return {"Authorization": f"Bearer {tok}"}
