"""HTTP trigger for setting up an export: GET /api/sources, GET /api/sendgrid/lists and /fields,
POST /api/preview (shared/api/routes.py handle_setup; the work is in shared/setup/). Its route
takes only those first parts (a regex constraint), so it never shadows exports/... or health.
Telemetry (when configured) is flushed before the response returns (shared/telemetry.py)."""

import json

import azure.functions as func

from shared import telemetry
from shared.api import routes


# `context`: the invocation's (see export_http: its annotation must be azure.functions.Context
# itself for the worker to load the function); None when called outside the host (tests).
def main(req: func.HttpRequest, context: func.Context = None) -> func.HttpResponse:  # type: ignore[assignment]
    with telemetry.invocation(context):
        result = routes.answer(
            lambda app: routes.handle_setup(
                app, req.method, req.route_params.get("area"), req.route_params.get("item"), req.get_body(), req.params
            )
        )
        return func.HttpResponse(
            json.dumps(result.body, indent=2), status_code=result.status, mimetype="application/json", headers=result.headers
        )
