"""SendGrid import jobs: what a status answer means for the run. Pure.

`PUT /v3/marketing/contacts` answers 202 with a job id: accepted, not applied. The job's
status (GET /v3/marketing/contacts/imports/{id}) is pending | completed | errored | failed, with
results {requested_count, created_count, updated_count, deleted_count, errored_count,
errors_url} (OpenAPI: ContactImport). The layout of the file behind errors_url is not
documented, so it is read leniently and never fails a run.
"""

from __future__ import annotations

import csv
import io
from typing import Any

FINAL = ("completed", "errored", "failed")


def is_pending(job: dict[str, Any]) -> bool:
    return job.get("status", "pending") not in FINAL


def apply_status(job: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """Record a status answer on a report's job entry. Returns the errors_url of a job that just
    ended with errors (None otherwise); the link is a pre-signed URL and is not kept."""
    status = str(answer.get("status", "pending"))
    results = dict(answer.get("results") or {})
    errors_url = results.pop("errors_url", None)
    job["status"] = status
    job["results"] = {k: v for k, v in results.items() if isinstance(v, (int, float))}
    if status == "failed":
        job["failed"] = job["contacts"]
    elif status == "errored":
        job["failed"] = int(results.get("errored_count") or 0)
    else:
        job["failed"] = 0
    return errors_url if status in ("errored", "failed") and isinstance(errors_url, str) else None


def parse_errors_file(text: str) -> list[tuple[str, str]]:
    """(identifier, message) pairs from an errors file: a CSV with a header in which one column
    names the contact (email or identifier) and one the error. Unknown layouts give []."""
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    who = next((i for i, h in enumerate(header) if "email" in h or "identifier" in h), None)
    why = next((i for i, h in enumerate(header) if any(w in h for w in ("error", "message", "reason"))), None)
    if who is None:
        return []
    pairs = []
    for row in reader:
        if len(row) > who and row[who].strip():
            message = row[why].strip() if why is not None and len(row) > why else "import error"
            pairs.append((row[who].strip().lower(), message))
    return pairs
