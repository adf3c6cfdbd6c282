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
from collections.abc import Callable, Iterable, Mapping
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


def accounted_failures(job: JobEntry | dict[str, Any], failures: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """The contacts an errored job did not apply, when its errors file accounts for every one of
    them: it names (by email, once each) exactly as many as the job's `errored_count`. None for
    anything else: a job that did not end errored, an errors file that could not be read, counts
    that do not add up (which contact the file left out is not known), an errored_count that is
    not a count."""
    count = (job.get("results") or {}).get("errored_count")
    if job.get("status") != "errored" or not failures or not _is_count(count):
        return None
    return failures if len(failures) == count else None


def applied_by(job: JobEntry | dict[str, Any], failures: Mapping[str, str] | None) -> Callable[[str], bool | None]:
    """The one rule for whether SendGrid applied a contact that `job` carried, made once per job
    (`failures`: the contacts its errors file names, None when it was not read). For a contact's
    email it gives None while the job is pending; True when the job completed, or ended errored
    with an errors file that accounts for every contact it did not apply (`accounted_failures`)
    and does not name this one; False otherwise (failed, a job SendGrid does not know, an errors
    file unreadable or short of names): the contact is sent again. Resending is safe; forgetting
    is not."""
    if is_pending(job):
        return _unknown
    if job.get("status") == "completed":
        return _applied
    named = accounted_failures(job, failures)
    if named is None:
        return _not_applied
    return lambda email: email not in named


def said_not_applied(job: JobEntry | dict[str, Any], failures: Mapping[str, str] | None) -> Callable[[str], bool]:
    """Whether SendGrid said it did not apply a contact `job` carried: the job ended errored or
    failed and its errors file names the contact. A contact `applied_by` counts as not applied for
    another reason (an errors file short of names or unreadable, a job SendGrid does not know) may
    have been applied: it is sent again, and the record remembers the fields it may have set."""
    if is_pending(job) or job.get("status") == "completed" or not failures:
        return _never
    return lambda email: email in failures


def _never(email: str) -> bool:
    return False


def _unknown(email: str) -> bool | None:
    return None


def _applied(email: str) -> bool | None:
    return True


def _not_applied(email: str) -> bool | None:
    return False


class Deliveries:
    """Which contacts SendGrid applied, by send position: each accepted request covers a range
    of positions [first, end) and has one import job; a contact counts as applied as
    `applied_by` says (its job completed, or errored with an errors file that accounts for every
    failure and does not name it). Positions of contacts SendGrid refused (a 400 naming them)
    inside an accepted range are never applied."""

    def __init__(self, ranges: dict[str, list[int]] | None = None, refused: list[int] | None = None) -> None:
        self.ranges: dict[str, list[int]] = dict(ranges or {})  # job id -> [first, end)
        self.refused: set[int] = set(refused or ())  # positions refused inside accepted ranges
        # job id -> {email: SendGrid's message} of contacts not applied (None: unknown which)
        self.failures: dict[str, dict[str, str] | None] = {}
        self._starts: list[int] = []
        self._spans: list[tuple[int, int, str]] = []
        self._jobs: dict[str, JobEntry] = {}  # job id -> its report entry (once settled)
        self._rules: dict[str, Callable[[str], bool | None]] = {}  # job id -> applied_by
        self._said: dict[str, Callable[[str], bool]] = {}  # job id -> said_not_applied

    def accepted(self, job_id: str, first: int, end: int) -> None:
        self.ranges[job_id] = [first, end]

    def refuse(self, position: int) -> None:
        self.refused.add(position)

    def failed(self, job_id: str, failures: dict[str, str] | None) -> None:
        self.failures[job_id] = failures
        if job_id in self._jobs:  # learnt after `settle`: the job's rule follows
            self._rules[job_id] = applied_by(self._jobs[job_id], failures)
            self._said[job_id] = said_not_applied(self._jobs[job_id], failures)

    def failed_spans(self) -> list[tuple[int, int, str]]:
        """[first, end, job id) of each job known to have failed contacts, by position."""
        return sorted((self.ranges[job][0], self.ranges[job][1], job) for job in self.failures if job in self.ranges)

    def settle(self, report_jobs: list[JobEntry]) -> None:
        """Freeze what each job applied, for `outcome` (call once the jobs have been confirmed)."""
        self._spans = sorted((first, end, job_id) for job_id, (first, end) in self.ranges.items())
        self._starts = [first for first, _, _ in self._spans]
        self._jobs = {job["job_id"]: job for job in report_jobs}
        self._rules = {job_id: applied_by(job, self.failures.get(job_id)) for job_id, job in self._jobs.items()}
        self._said = {job_id: said_not_applied(job, self.failures.get(job_id)) for job_id, job in self._jobs.items()}

    def applied(self, position: int, email: bytes) -> bool:
        return self.outcome(position, email) is True

    def outcome(self, position: int, email: bytes) -> bool | bytes:
        """True when SendGrid applied the contact at `position`, False when it did not (refused,
        never sent, failed), or the id of its job while that job is still pending."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0 or position >= self._spans[index][1] or position in self.refused:
            return False  # refused with a 400, or never sent
        job_id = self._spans[index][2]
        result = self._rules.get(job_id, _unknown)(email.decode())
        if result is None:  # pending: kept in the record by its id, so only an id that is one
            return job_id.encode() if looks_like_id(job_id) else False
        return result

    def may_hold(self, position: int, email: bytes) -> bool:
        """Whether SendGrid may hold the contact sent at `position` (asked when `outcome` is not
        True): a request it accepted carried it, and SendGrid did not say it did not apply it."""
        index = bisect.bisect_right(self._starts, position) - 1
        if index < 0 or position >= self._spans[index][1] or position in self.refused:
            return False
        job_id = self._spans[index][2]
        return not self._said.get(job_id, _never)(email.decode())

    def all_applied(self) -> bool:
        return bool(self._rules) and not self.refused and all(rule is _applied for rule in self._rules.values())
