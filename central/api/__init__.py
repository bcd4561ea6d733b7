"""The central HTTP API and dashboard host: ``create_app(settings)``."""

from central.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
