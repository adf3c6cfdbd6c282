"""One translation of Azure Storage failures into the app's error: `with storage_errors("..."):`.

Azure's own messages can be long and may echo request details; the type and HTTP status are
what an operator needs. Code that treats "not found" as an answer catches
ResourceNotFoundError inside the block, before this sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import AzureError

from shared.errors import ExportError


def storage_error(what: str, exc: Exception) -> ExportError:
    status = getattr(exc, "status_code", None) or ""
    return ExportError("storage_unavailable", f"{what} failed: {type(exc).__name__} {status}".strip())


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Raise ExportError("storage_unavailable") naming `what` for any AzureError in the block."""
    try:
        yield
    except AzureError as exc:
        raise storage_error(what, exc) from None
