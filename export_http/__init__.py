"""HTTP trigger: translates the request into a call to shared.api and the result into JSON.
Telemetry (when configured) is flushed before the response returns."""

import logging

import azure.functions as func

from shared import api, telemetry
from shared.errors import ExportError
from shared.services import get_app
from shared.settings import SettingsError


def main(req: func.HttpRequest) -> func.HttpResponse:
    telemetry.configure()  # once per process, only with APPLICATIONINSIGHTS_CONNECTION_STRING
    try:
        try:
            app = get_app()
        except SettingsError as exc:
            logging.error("settings: %s", exc)
            result = api.error_response(ExportError("internal_error", f"app settings are invalid: {exc}"))
        else:
            result = api.handle(app, req.method, req.route_params.get("name"), req.route_params.get("action"),
                                req.get_body(), req.params)
        return func.HttpResponse(result.json(), status_code=result.status, mimetype="application/json")
    finally:
        telemetry.flush()  # the instance may be frozen as soon as the invocation returns
