"""HTTP trigger: translates the request into a call to shared.api and the result into JSON.
Telemetry (when configured) is flushed before the response returns, and log lines from the app's
own threads ({"wait": true} runs inline) carry the invocation id (shared/telemetry.py, invocation)."""

import json
from urllib.parse import urlsplit

import azure.functions as func

from shared import telemetry
from shared.api import routes


def _absolute(request_url: str, path: str) -> str:
    """`path` on the request's own scheme and host (the status URL a 202 points to)."""
    parts = urlsplit(request_url or "")
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.scheme and parts.netloc else path


# `context`: the invocation's, which the Python worker passes to a `main` that names it (its
# annotation must be azure.functions.Context itself, not Optional, or the worker refuses to load
# the function); None when called outside the host (tests).
def main(req: func.HttpRequest, context: func.Context = None) -> func.HttpResponse:  # type: ignore[assignment]
    with telemetry.invocation(context):
        result = routes.answer(
            lambda app: routes.handle(
                app,
                req.method,
                req.route_params.get("name"),
                req.route_params.get("action"),
                req.get_body(),
                req.params,
                req.route_params.get("id"),
            )
        )
        headers = {name: _absolute(req.url, value) if name == "Location" else value for name, value in result.headers.items()}
        body = result.body
        if "status_url" in body:
            body = {**body, "status_url": _absolute(req.url, body["status_url"])}
        return func.HttpResponse(
            json.dumps(body, indent=2), status_code=result.status, mimetype="application/json", headers=headers
        )
