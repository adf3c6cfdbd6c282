"""HTTP trigger: translates the request into a call to shared.api and the result into JSON.
Telemetry (when configured) is flushed before the response returns."""

import json
import logging
from urllib.parse import urlsplit

import azure.functions as func

from shared import telemetry
from shared.api import routes
from shared.api.compose import get_app
from shared.errors import ExportError
from shared.settings import SettingsError


def _absolute(request_url: str, path: str) -> str:
    """`path` on the request's own scheme and host (the status URL a 202 points to)."""
    parts = urlsplit(request_url or "")
    return f"{parts.scheme}://{parts.netloc}{path}" if parts.scheme and parts.netloc else path


def main(req: func.HttpRequest) -> func.HttpResponse:
    telemetry.configure()  # once per process, only with APPLICATIONINSIGHTS_CONNECTION_STRING
    try:
        try:
            app = get_app()
        except SettingsError as exc:
            logging.error("settings: %s", exc)
            result = routes.error_response(ExportError("internal_error", f"app settings are invalid: {exc}"))
        else:
            result = routes.handle(
                app,
                req.method,
                req.route_params.get("name"),
                req.route_params.get("action"),
                req.get_body(),
                req.params,
                req.route_params.get("id"),
            )
        headers = {name: _absolute(req.url, value) if name == "Location" else value for name, value in result.headers.items()}
        body = result.body
        if "status_url" in body:
            body = {**body, "status_url": _absolute(req.url, body["status_url"])}
        return func.HttpResponse(
            json.dumps(body, indent=2), status_code=result.status, mimetype="application/json", headers=headers
        )
    finally:
        telemetry.flush()  # the instance may be frozen as soon as the invocation returns
