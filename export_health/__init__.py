"""Health probe for the platform (siteConfig.healthCheckPath): anonymous, so it says nothing but
whether the app settings are valid. No storage or SendGrid call: probes come every minute."""

import json

import azure.functions as func

from shared.services import get_app
from shared.settings import SettingsError


def main(req: func.HttpRequest) -> func.HttpResponse:
    try:
        get_app()
    except SettingsError:
        body, status = {"status": "unhealthy", "reason": "invalid app settings; see the function log"}, 503
    else:
        body, status = {"status": "ok"}, 200
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")
