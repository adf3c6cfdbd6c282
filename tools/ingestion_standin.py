"""A local Application Insights ingestion stand-in: point a connection string's IngestionEndpoint
(and LiveEndpoint) at it and the real Azure Monitor exporter sends it what it would send Azure.

POST /v2.1/track takes the exporter's body (a JSON array of telemetry envelopes, or
newline-delimited JSON; gzip when `Content-Encoding: gzip` or when the body starts with the gzip
magic bytes), records every envelope and the raw decoded body, and answers as the Breeze
ingestion service does: 200 {"itemsReceived", "itemsAccepted", "errors": []}. Anything else
gets 200 with an empty body (live metrics pings, if enabled). HTTP by default; HTTPS when
given a certificate (as tools/keyvault_standin.py does), since the exporter takes either.

    python -m tools.ingestion_standin      # prints a connection string, then each envelope
"""

from __future__ import annotations

import gzip
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tools.serving import serve_in_background

TRACK_PATH = "/v2.1/track"
INSTRUMENTATION_KEY = "00000000-0000-0000-0000-000000000000"


@dataclass
class IngestionState:
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)  # every decoded body, as text
    gzipped: int = 0  # how many bodies came gzip-compressed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The baseData of custom events (customEvents), optionally of one name."""
        with self.lock:
            found = [e["data"]["baseData"] for e in self.envelopes if e.get("data", {}).get("baseType") == "EventData"]
        return [e for e in found if name is None or e.get("name") == name]

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        """baseData of every envelope of a type: RemoteDependencyData, MetricData, MessageData..."""
        with self.lock:
            return [e["data"]["baseData"] for e in self.envelopes if e.get("data", {}).get("baseType") == base_type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != TRACK_PATH:
            self._reply(b"")
            return
        zipped = self.headers.get("Content-Encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b"
        text = (gzip.decompress(raw) if zipped else raw).decode("utf-8")
        stripped = text.strip()
        if stripped.startswith("["):
            items = json.loads(stripped)
        else:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        state = self.server.state
        with state.lock:
            state.bodies.append(text)
            state.envelopes.extend(items)
            state.gzipped += zipped
        self._reply(json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode())

    def do_GET(self) -> None:
        self._reply(b"")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: IngestionState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


@dataclass
class IngestionStandIn:
    state: IngestionState
    server: _Server
    scheme: str

    @property
    def url(self) -> str:
        host = "localhost" if self.scheme == "https" else "127.0.0.1"  # the certificate names localhost
        return f"{self.scheme}://{host}:{self.server.server_address[1]}"

    @property
    def connection_string(self) -> str:
        return f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={self.url}/;LiveEndpoint={self.url}/"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(cert_file: str | None = None, key_file: str | None = None, state: IngestionState | None = None) -> IngestionStandIn:
    server = _Server(state or IngestionState())
    if cert_file and key_file:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    serve_in_background(server, "ingestion-standin")
    return IngestionStandIn(server.state, server, "https" if cert_file else "http")


if __name__ == "__main__":
    standin = start()
    print(f"APPLICATIONINSIGHTS_CONNECTION_STRING={standin.connection_string}", flush=True)
    seen = 0
    try:
        while True:
            threading.Event().wait(1)
            with standin.state.lock:
                fresh, seen = standin.state.envelopes[seen:], len(standin.state.envelopes)
            for envelope in fresh:
                print(json.dumps(envelope.get("data", {}), indent=2), flush=True)
    except KeyboardInterrupt:
        standin.stop()
