"""SendGrid's answers and what may go into its URLs and queries. Pure, no I/O.

- A 400 to PUT /v3/marketing/contacts refuses the whole request and names every refused
  contact: `{"errors":[{"field":"contacts[12].email","message":"email '...' is not valid"}]}`
  (grouparoo's recording plugins/@grouparoo/sendgrid/__tests__/fixtures/export/export-record.js;
  Segment's sendgrid-audiences action parses all of them). Messages quote profile values, so
  they go to the rejects CSV only; `SendGridRejected`'s text never carries one.
- Ids from SendGrid (job ids, contact ids; UUIDs in practice) go into a URL path or query only
  when they look like ids.
- search/emails takes at most 100 addresses of at most 100 characters each (OpenAPI
  tsg_mc_contacts_v3.json: `emails.items.maxLength: 100`); a 400 if any address is invalid.
- SGQL strings: "Escaping must be done for the character used as the delimiter if it is found
  within the string. The escape character is the backslash, which must also be escaped"
  (https://www.twilio.com/docs/sendgrid/for-developers/sending-email/segmentation-query-language).
  Emails are stored lower-case, so an SGQL email search uses the lower-case address
  (Search Contacts, OpenAPI description).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ExportError

SEARCH_EMAILS_MAX = 100  # addresses per search/emails request
SEARCH_EMAIL_MAX_CHARS = 100  # characters per searched address
BATCH_IDS_MAX = 100  # ids per POST /v3/marketing/contacts/batch (OpenAPI maxItems)
# DELETE .../lists/{id}/contacts takes ids in the query string; keep the URL well under the
# 2,048 characters many proxies allow.
MAX_QUERY_CHARS = 1_800

_ID = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_CONTACT_FIELD = re.compile(r"^contacts\[(\d+)\]")
_SEARCH_FIELD = re.compile(r"^emails\[(\d+)\]")
_QUOTED = re.compile(r"'([^']*)'")


def looks_like_id(value: object) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def checked_id(value: str, what: str) -> str:
    """`value` if it may go into a URL; ExportError("sendgrid_error") otherwise."""
    if not looks_like_id(value):
        raise ExportError("sendgrid_error", f"a {what} from SendGrid does not look like an id; not used in a URL")
    return value


def id_batches(ids: Iterable[str]) -> Iterator[list[str]]:
    """Contact ids in groups whose comma-joined query stays under MAX_QUERY_CHARS."""
    batch: list[str] = []
    size = 0
    for contact_id in ids:
        if batch and size + len(contact_id) + 1 > MAX_QUERY_CHARS:
            yield batch
            batch, size = [], 0
        batch.append(contact_id)
        size += len(contact_id) + 1
    if batch:
        yield batch


class SendGridRejected(Exception):
    """A 400: SendGrid refused the request body.

    - `errors`: SendGrid's list as it came (messages may quote an email: rejects CSV only).
    - `contacts`: {index in the body's contacts: message(s)} for errors naming `contacts[i]`.
    - `request_fields`: fields that do not name a contact (`list_ids`...): request-level.
    - `unattributed`: errors with no field at all.
    str() gives counts and field names only, never a message."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        self.contacts: dict[int, str] = {}
        self.request_fields: list[str] = []
        self.unattributed = 0
        for error in errors:
            name = error.get("field")
            match = _CONTACT_FIELD.match(name) if isinstance(name, str) else None
            message = str(error.get("message") or "rejected by SendGrid")
            if match:
                index = int(match.group(1))
                self.contacts[index] = f"{self.contacts[index]}; {message}" if index in self.contacts else message
            elif isinstance(name, str) and name:
                self.request_fields.append(name)
            else:
                self.unattributed += 1
        super().__init__(
            f"SendGrid rejected the request ({len(errors)} error(s); {len(self.contacts)} contact(s) named"
            + (f"; request-level fields: {', '.join(sorted(set(self.request_fields)))[:200]}" if self.request_fields else "")
            + ")"
        )

    @property
    def request_level(self) -> bool:
        """True when an error names a field that is not a contact (halving cannot isolate it)."""
        return bool(self.request_fields)


@dataclass
class ContactSearch:
    """Leavers looked up by primary email: email -> contact id for those found; email -> reason
    (safe to log: no value) for those that could not be looked up. Not found is neither."""

    found: dict[str, str] = field(default_factory=dict)
    unsearchable: dict[str, str] = field(default_factory=dict)


def sgql_email_query(email: str) -> str | None:
    """`email = '<lower-case address>'`, escaped for SGQL; None for an address with control
    characters (not an address; not worth the risk of a query that means something else)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in email):
        return None
    escaped = email.lower().replace("\\", "\\\\").replace("'", "\\'")
    return f"email = '{escaped}'"


def search_refusals(errors: Any, part: list[str]) -> set[str]:
    """The addresses of `part` a search/emails 400 names, by `emails[i]` field or by quoting the
    address in its message (the real layout of this 400 is not recorded: both are read)."""
    named: set[str] = set()
    if not isinstance(errors, list):
        return named
    lowered = {email.lower(): email for email in part}
    for error in errors:
        if not isinstance(error, dict):
            continue
        match = _SEARCH_FIELD.match(str(error.get("field") or ""))
        if match and int(match.group(1)) < len(part):
            named.add(part[int(match.group(1))])
        for quoted in _QUOTED.findall(str(error.get("message") or "")):
            if quoted.lower() in lowered:
                named.add(lowered[quoted.lower()])
    return named
