"""Health probe for the platform (siteConfig.healthCheckPath): anonymous, so it says no more than
whether the app settings are valid and, if not, the name of the setting at fault (never its value
or the parser's message). No storage or SendGrid call: probes come every minute."""

import json
import logging

import azure.functions as func

from shared.api.compose import get_app
from shared.settings import SETTINGS, SettingsError


def main(req: func.HttpRequest) -> func.HttpResponse:
    body: dict[str, str | None]
    try:
        get_app()
    except SettingsError as exc:
        logging.error("settings: %s", exc)
        # Longest name first: "SENDGRID_API_KEY_SECRET_NAME" also contains "SENDGRID_API_KEY".
        setting = next((n for n in sorted(SETTINGS, key=len, reverse=True) if n in str(exc)), None)
        reason = f"invalid app setting {setting}" if setting else "invalid app settings"
        body, status = {"status": "unhealthy", "setting": setting, "reason": f"{reason}; see the function log"}, 503
    except Exception:  # anything else that stops the app from starting is unhealthy, not a 500
        logging.exception("the app could not start")
        body, status = {"status": "unhealthy", "reason": "the app could not start; see the function log"}, 503
    else:
        body, status = {"status": "ok"}, 200
    return func.HttpResponse(json.dumps(body), status_code=status, mimetype="application/json")
