"""Test machinery shared across the test packages (central, tickets, edge).

* ``pg``: throwaway PostgreSQL databases on 127.0.0.1:5432 (``make_database``, ``pg_url``).
* ``broker``: the system Mosquitto and private Mosquitto instances (``Mosquitto``,
  ``system_broker``, ``mosquitto``).
* ``net``: free ports and waiting for a listener.
* ``api_server``: the FastAPI app under uvicorn on a free port, in a thread.
* ``http``: the bearer-token header of an API request (``auth``).
* ``cdp``: headless Chromium over the DevTools protocol, for the browser tests.

Pytest fixtures defined here are made available to a test package by importing them in its
``conftest.py``.
"""
