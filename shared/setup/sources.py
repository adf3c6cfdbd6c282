"""GET /api/sources: the Customer Insights exports in SOURCE_CONTAINER, a page at a time
(shared/source/discovery.py does the walk, within a fixed budget of List Blobs pages)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.services import App
from shared.setup import inputs
from shared.source import discovery


def sources_answer(app: App, query: Mapping[str, str]) -> dict[str, Any]:
    """{"sources": [folder, ...], "continuation": token | null}; `limit` and `continuation` in
    the query (inputs.sources_query)."""
    limit, continuation = inputs.sources_query(query)
    found, token = discovery.discover(app.services.source, limit, continuation)
    return {"sources": [folder.to_dict() for folder in found], "continuation": token}
