"""HTTP trigger, anonymous: the console, a page for people (GET /api/console) with its one script
and one stylesheet (/api/console/console.js, /api/console/console.css), read from console/ at the
app root. The page holds no data: it asks for the function key (or takes it from the URL fragment,
#key=..., which never reaches a server) and calls the API with it, so this function needs none.

Every answer carries strict headers: a Content-Security-Policy that allows only this origin's
script, stylesheet and API (no inline script or style, no other origin, no framing), nosniff and
no referrer. Anything but the three files is a 404; no path from the request reaches the file
system."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

# console/ beside host.json: shipped with the app (.funcignore does not exclude it).
CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
# The route's {asset} -> (file in CONSOLE_DIR, MIME type); None is the page itself.
ASSETS: dict[str | None, tuple[str, str]] = {
    None: ("index.html", "text/html"),
    "console.js": ("console.js", "text/javascript"),
    "console.css": ("console.css", "text/css"),
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors 'none' for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    # The page is small and changes with each deployment: always revalidated, never served stale.
    "Cache-Control": "no-cache",
}


def _answer(status: int, text: str, mimetype: str = "text/plain", extra: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        text, status_code=status, mimetype=mimetype, charset="utf-8", headers={**SECURITY_HEADERS, **(extra or {})}
    )


def main(req: func.HttpRequest) -> func.HttpResponse:
    if req.method.upper() != "GET":
        return _answer(405, "use GET", extra={"Allow": "GET"})
    asset = req.route_params.get("asset") or None
    if asset not in ASSETS:
        return _answer(404, "not found: the console is GET /api/console")
    path = urlsplit(req.url or "").path
    if asset is None and path.endswith("/"):
        # The page names its files relative to /api/console; from /api/console/ they would miss.
        return _answer(308, "", extra={"Location": path.rstrip("/")})
    file_name, mimetype = ASSETS[asset]
    return _answer(200, (CONSOLE_DIR / file_name).read_text(encoding="utf-8"), mimetype)
