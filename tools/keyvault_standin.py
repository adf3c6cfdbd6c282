"""A local Key Vault stand-in, so tests read the key through the real SecretClient and the real
DefaultAzureCredential.

Two servers on loopback:
- the vault (HTTPS): GET /secrets/{name}[/{version}] answers as Key Vault does. A request
  without a token gets 401 with the `WWW-Authenticate: Bearer authorization=..., resource=...`
  challenge that SecretClient's challenge policy expects; a valid token gets
  {"value", "id", "attributes"}; an unknown secret gets 404 SecretNotFound.
- a managed identity endpoint (HTTP), shaped like the one App Service and Functions give an
  app (env IDENTITY_ENDPOINT + IDENTITY_HEADER): GET ?resource=...&api-version=2019-08-01 with
  the X-IDENTITY-HEADER header answers {"access_token", "expires_on", "resource", "token_type"}.
Set those two variables and DefaultAzureCredential picks the stand-in's identity up as it would
on a Function App.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools.serving import serve_in_background

TENANT = "00000000-0000-0000-0000-000000000000"


@dataclass
class VaultState:
    secrets: dict[str, str] = field(default_factory=dict)
    identity_header: str = field(default_factory=lambda: secrets.token_hex(8))
    tokens: set[str] = field(default_factory=set)
    secret_reads: int = 0
    token_requests: int = 0
    unavailable: bool = False  # answer 503 to secret reads


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _VaultHandler(_Handler):
    def do_GET(self) -> None:
        state: VaultState = self.server.state
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in state.tokens:
            challenge = f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"'
            self._reply(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer"}},
                {"WWW-Authenticate": challenge},
            )
            return
        if len(parts) < 2 or parts[0] != "secrets":
            self._reply(404, {"error": {"code": "NotFound", "message": "not found"}})
            return
        state.secret_reads += 1
        if state.unavailable:
            self._reply(503, {"error": {"code": "ServiceUnavailable", "message": "try later"}})
            return
        name = parts[1]
        if name not in state.secrets:
            self._reply(404, {"error": {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found"}})
            return
        host = self.headers.get("Host", "localhost")
        self._reply(
            200,
            {
                "value": state.secrets[name],
                "id": f"https://{host}/secrets/{name}/0123456789abcdef",
                "attributes": {"enabled": True, "created": int(time.time()), "updated": int(time.time())},
            },
        )


class _IdentityHandler(_Handler):
    def do_GET(self) -> None:
        state: VaultState = self.server.state
        query = parse_qs(urlsplit(self.path).query)
        if self.headers.get("X-IDENTITY-HEADER") != state.identity_header:
            self._reply(401, {"error": "invalid identity header"})
            return
        state.token_requests += 1
        token = secrets.token_urlsafe(24)
        state.tokens.add(token)
        resource = query.get("resource", [""])[0]
        self._reply(
            200, {"access_token": token, "expires_on": str(int(time.time()) + 3600), "resource": resource, "token_type": "Bearer"}
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type, state: VaultState) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.state = state


@dataclass
class KeyVaultStandIn:
    state: VaultState
    vault: _Server
    identity: _Server

    @property
    def vault_url(self) -> str:
        # "localhost" so the certificate (issued for it) matches.
        return f"https://localhost:{self.vault.server_address[1]}"

    @property
    def identity_env(self) -> dict[str, str]:
        """What a Function App's host sets for its managed identity."""
        return {
            "IDENTITY_ENDPOINT": f"http://127.0.0.1:{self.identity.server_address[1]}/msi/token",
            "IDENTITY_HEADER": self.state.identity_header,
        }

    def stop(self) -> None:
        for server in (self.vault, self.identity):
            server.shutdown()
            server.server_close()


def start(cert_file: str, key_file: str, state: VaultState | None = None) -> KeyVaultStandIn:
    state = state or VaultState()
    vault = _Server(_VaultHandler, state)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    vault.socket = context.wrap_socket(vault.socket, server_side=True)
    identity = _Server(_IdentityHandler, state)
    for server in (vault, identity):
        serve_in_background(server, "keyvault-standin")
    return KeyVaultStandIn(state, vault, identity)
