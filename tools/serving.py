"""Serving a local stand-in from a background thread, stoppable at once.

`socketserver`'s `serve_forever` checks for `shutdown()` every `poll_interval` (0.5 s by
default), so every stop waited up to half a second: over a test suite that starts a SendGrid
sandbox per test, minutes of waiting. The stand-ins poll every 20 ms instead."""

from __future__ import annotations

import socketserver
import threading

POLL_INTERVAL = 0.02


def serve_in_background(server: socketserver.BaseServer, name: str) -> threading.Thread:
    """Serve `server` on a daemon thread; `server.shutdown()` returns within POLL_INTERVAL."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, name=name, daemon=True)
    thread.start()
    return thread
