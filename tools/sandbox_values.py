"""What the SendGrid sandbox takes as a value (an email, a custom field's value, a date as it is
read back) and the ids it makes for new contacts. Standard library only; see
sendgrid_sandbox.py for what the sandbox follows and where it guesses."""

from __future__ import annotations

import functools
import random
import re
from datetime import UTC, datetime
from typing import Any

# The sandbox's own address check (deliberately not the exporter's code): one "@", a dotted
# domain whose last label is alphabetic or punycode (xn--), no spaces or consecutive dots.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.(?:[a-z]{2,}|xn--[a-z0-9-]{2,})$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?$")


def sandbox_email_ok(email: str) -> bool:
    return bool(_EMAIL.match(email)) and ".." not in email and not email.startswith(".")


def iso_date(value: Any) -> str | None:
    """An ISO 8601 date or date-time as SendGrid reads it back (`YYYY-MM-DDTHH:MM:SSZ`), or None."""
    return _iso_date_text(value) if isinstance(value, str) else None


# Remembered: a segment's dates repeat, and a parse costs ~3 us, twice a contact (checked when
# the request comes, stored when the job is processed): seconds of the sandbox's CPU a bench run
# on the same cores as the exporter it measures.
@functools.lru_cache(maxsize=65_536)
def _iso_date_text(value: str) -> str | None:
    if not _ISO_DATE.match(value):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def custom_value_problem(kind: str, value: Any) -> str | None:
    """Why SendGrid's import would not take `value` for a custom field of type `kind`."""
    if value == "":
        return None  # clears the stored value (the sandbox's choice for Number and Date: unknown)
    if kind == "Number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return "value is not a valid Number"
    if kind == "Date" and iso_date(value) is None:
        return "value is not a valid Date (ISO 8601)"
    if kind == "Text" and not isinstance(value, str):
        return "value is not a valid Text"
    return None


def contact_id() -> str:
    """A new contact's id: a random (version 4) UUID, as SendGrid's ids are, from the process's
    random generator (unique, not secret): 0.6 us where str(uuid.uuid4()) took 2.4, once per
    contact an import creates."""
    digits = f"{random.getrandbits(128):032x}"
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-a{digits[17:20]}-{digits[20:]}"
