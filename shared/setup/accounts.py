"""Which SendGrid account a set-up request reads, and what it has: GET /api/sendgrid/lists and
/fields, and the catalog (lists and custom fields) a preview resolves names against.

Only accounts the app is configured for are read: the default one, or one a configured export's
definition names (`sendgrid_api_key_secret`, `sendgrid_region`; Services.client_for_export). A
draft naming any other secret is not read with it: otherwise a request could have the app send
any secret of its Key Vault to SendGrid as an API key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from shared.definitions import RESERVED_FIELD_MAX_LENGTH
from shared.errors import ExportError
from shared.sendgrid.client import SendGridClient
from shared.services import Account, App
from shared.setup.draft import Catalog, Problem

T = TypeVar("T")
# Reserved fields the app maps are Text in SendGrid (GET /v3/marketing/field_definitions,
# reserved_fields[].field_type); their lengths are the ContactRequest schema's (definitions.py).
RESERVED_TYPE = "Text"
UNCONFIGURED = (
    "not an account a configured export uses: a preview reads SendGrid only with the default key or one "
    "a configured export names, so lists, custom fields and the plan are not checked"
)


def export_client(app: App, export: str | None) -> SendGridClient:
    """The default account's client, or (by name) a configured export's; 404 for an unknown export."""
    if export is None:
        return app.services.sendgrid()
    if export not in app.settings.definitions:
        raise ExportError("not_found", f"no export named '{export}'")
    return app.services.client_for_export(export)


def draft_client(app: App, draft: dict[str, Any]) -> tuple[SendGridClient | None, Problem | None]:
    """The client of the account a draft names, if the app is configured for it; else a problem."""
    secret, region = draft.get("sendgrid_api_key_secret"), draft.get("sendgrid_region", "global")
    if secret == app.settings.api_key_secret_name:
        secret = None
    wanted = Account(secret, region) if region in ("global", "eu") else None
    if wanted == Account():
        return app.services.sendgrid(), None
    for name, account in app.services.accounts.items():
        if account == wanted:
            return app.services.client_for_export(name), None
    return None, Problem("sendgrid_api_key_secret" if secret is not None else "sendgrid_region", UNCONFIGURED)


def reading(client: SendGridClient, read: Callable[[SendGridClient], T]) -> T:
    """`read(client)`, the client closed afterwards (each is a session of its own)."""
    try:
        return read(client)
    finally:
        client.close()


def catalog_of(client: SendGridClient) -> Catalog:
    lists, _ = client.marketing_lists()
    return Catalog(lists, client.custom_fields())


def lists_answer(client: SendGridClient) -> dict[str, Any]:
    """GET /api/sendgrid/lists: {"lists": [{id, name, contact_count}], "truncated"} (truncated:
    the account has more lists than LISTS_MAX_PAGES pages hold)."""
    lists, more = client.marketing_lists()
    return {"lists": lists, "truncated": more}


def fields_answer(client: SendGridClient) -> dict[str, Any]:
    """GET /api/sendgrid/fields: the reserved fields the app maps (with SendGrid's length limits)
    and the account's custom fields."""
    custom = [{"id": f.id, "name": f.name, "type": f.field_type} for f in client.custom_fields().values()]
    reserved = [{"name": name, "type": RESERVED_TYPE, "max_length": length} for name, length in RESERVED_FIELD_MAX_LENGTH.items()]
    return {"reserved": reserved, "custom": custom}
