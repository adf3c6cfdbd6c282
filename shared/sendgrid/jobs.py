"""SendGrid import jobs: what a status answer means for the run. Pure.

`PUT /v3/marketing/contacts` answers 202 with a job id: accepted, not applied. The job's
status (GET /v3/marketing/contacts/imports/{id}) is pending | completed | errored | failed, with
results {requested_count, created_count, updated_count, deleted_count, errored_count,
errors_url} (OpenAPI: ContactImport). The layout of the file behind errors_url is not
documented, so it is read leniently and never fails a run.
"""

from __future__ import annotations

import bisect
import csv
import io
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any, Literal, NotRequired, TypedDict

from shared.sendgrid.answers import looks_like_id

JobStatus = Literal["pending", "completed", "errored", "failed"]
FINAL = ("completed", "errored", "failed")


class JobEntry(TypedDict):
    """One accepted request's import job, as the run report (and the checkpoint) keeps it."""

    job_id: str
    contacts: int
    status: str  # a JobStatus, or whatever else SendGrid answered (kept, treated as pending)
    failed: NotRequired[int]
    reason: NotRequired[str]  # SendGrid's reason for failures, without any quoted value
    results: NotRequired[dict[str, int | float]]


def is_pending(job: JobEntry | dict[str, Any]) -> bool:
    return job.get("status", "pending") not in FINAL


def _status_of(answer: Any) -> str:
    raw = answer.get("status", "pending") if isinstance(answer, dict) else "pending"
    return raw if isinstance(raw, str) and raw else "pending"


def _results_of(answer: Any) -> dict[str, Any]:
    raw = answer.get("results") if isinstance(answer, dict) else None
    return dict(raw) if isinstance(raw, dict) else {}


def errors_url(answer: Any) -> str | None:
    """The errors_url of a status answer for a job that ended with errors, else None (a
    pre-signed URL: read, never kept)."""
    url = _results_of(answer).get("errors_url")
    return url if _status_of(answer) in ("errored", "failed") and isinstance(url, str) else None


def apply_status(job: JobEntry, answer: dict[str, Any]) -> str | None:
    """Record a status answer on a report's job entry. Returns the errors_url of a job that just
    ended with errors (None otherwise); the link is a pre-signed URL and is not kept."""
    status = _status_of(answer)
    results = _results_of(answer)
    results.pop("errors_url", None)
    job["status"] = status
    job["results"] = {str(k): v for k, v in results.items() if _is_count(v)}
    if status == "failed":
        job["failed"] = job["contacts"]
    elif status == "errored":
        # An errored_count that is not a count (seen: "n/a") says nothing: none counts as applied.
        count = results.get("errored_count")
        if isinstance(count, (int, float)) and _is_count(count):
            job["failed"] = min(int(count), job["contacts"])
        else:
            job["failed"] = job["contacts"]
    else:
        job["failed"] = 0
    return errors_url(answer)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|\S*@\S*")


def safe_reason(messages: Iterable[str]) -> str:
    """The most common of SendGrid's messages, with quoted values and anything like an address
    replaced by '…' (a message may quote the contact: "email 'x@y' is not valid")."""
    counted = Counter(_QUOTED.sub("…", message).strip()[:200] for message in messages)
    return counted.most_common(1)[0][0] if counted else ""


def _is_count(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 2**53  # NaN fails too


def parse_errors_file(text: str) -> list[tuple[str, str]]:
    """(identifier, message) pairs from an errors file: a CSV with a header in which one column
    names the contact (email or identifier) and one the error. Unknown layouts, and files csv
    cannot read (a field over its limit), give []."""
    reader = csv.reader(io.StringIO(text))
    pairs = []
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        who = next((i for i, h in enumerate(header) if "email" in h or "identifier" in h), None)
        why = next((i for i, h in enumerate(header) if any(w in h for w in ("error", "message", "reason"))), None)
        if who is None:
            return []
        for row in reader:
            if len(row) > who and row[who].strip():
                message = row[why].strip() if why is not None and len(row) > why else "import error"
                pairs.append((row[who].strip().lower(), message))
    except csv.Error:  # a field over csv's limit, a NUL: which contacts failed is not known
        return []
    return pairs


class Deliveries:
    """Which contacts SendGrid applied, by send position: each accepted request covers a range
    of positions [first, end) and has one import job; a contact counts as applied only when
    its job completed, or errored without naming it in a readable errors file. Positions of
    contacts SendGrid refused (a 400 naming them) inside an accepted range are never applied."""

    def __init__(self, ranges: dict[str, list[int]] | None = None, refused: list[int] | None = None) -> None:
        self.ranges: dict[str, list[int]] = dict(ranges or {})  # job id -> [first, end)
        self.refused: set[int] = set(refused or ())  # positions refused inside accepted ranges
        # job id -> {email: SendGrid's message} of contacts not applied (None: unknown which)
        self.failures: dict[str, dict[str, str] | None] = {}
        self._starts: list[int] = []
        self._spans: list[tuple[int, int, str]] = []
        self._status: dict[str, str] = {}

    def accepted(self, job_id: str, first: int, end: int) -> None:
        self.ranges[job_id] = [first, end]

    def refuse(self, position: int) -> None:
        self.refused.add(position)

    def failed(self, job_id: str, failures: dict[str, str] | None) -> None:
        self.failures[job_id] = failures

    def failed_spans(self) -> list[tuple[int, int, str]]:
        """[first, end, job id) of each job known to have failed contacts, by position."""
        return sorted((self.ranges[job][0], self.ranges[job][1], job) for job in self.failures if job in self.ranges)

    def settle(self, report_jobs: list[JobEntry]) -> None:
        """Freeze the job statuses for `applied` (call once the jobs have been confirmed)."""
        self._spans = sorted((first, end, job_id) for job_id, (first, end) in self.ranges.items())
        self._starts = [first for first, _, _ in self._spans]
        self._status = {job["job_id"]: job["status"] for job in report_jobs}

    def applied(self, position: int, email: bytes) -> bool:
        return self.outcome(position, email) is True

    def outcome(self, position: int, email: bytes) -> bool | bytes:
        """True when SendGrid applied the contact at `position`, False when it did not (refused,
        never sent, failed), or the id of its job while that job is still pending."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0 or position >= self._spans[index][1] or position in self.refused:
            return False  # refused with a 400, or never sent
        job_id = self._spans[index][2]
        status = self._status.get(job_id, "pending")
        if status == "completed":
            return True
        if status not in FINAL:  # kept in the record by its id, so only an id that is one
            return job_id.encode() if looks_like_id(job_id) else False
        failed = self.failures.get(job_id)
        return status == "errored" and failed is not None and email.decode() not in failed

    def all_applied(self) -> bool:
        return bool(self._status) and not self.refused and all(status == "completed" for status in self._status.values())
