"""Confirming what SendGrid accepted: its import jobs, polled until final or the wait is over;
the contacts of failed jobs listed in the rejects file; earlier runs' pending contacts settled in
the record. Re-checking a confirming run later is lifecycle.py's (with `poll_once`).

`poll_once` only asks and records (statuses, and which contacts failed per job); listing those
contacts reads the key file, so it happens once, after reading has closed that file.
"""

from __future__ import annotations

import bisect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.delta import diff
from shared.delta.lines import parse_key, parse_record, pending_job
from shared.errors import ExportError
from shared.run.context import RunContext
from shared.sendgrid import jobs
from shared.sendgrid.client import SendGridClient
from shared.sendgrid.jobs import JobEntry

log = logging.getLogger(__name__)

IMPORT_FAILED = "failed in SendGrid import"


@dataclass(frozen=True)
class JobAnswer:
    """What SendGrid said about one import job: its status answer as it came, and for a job that
    ended with failures, the contacts its errors file names, by email, with SendGrid's message
    ({}: none named, not asked for, or the file unreadable); `read` when the file was asked for."""

    status: Any
    failures: dict[str, str] = field(default_factory=dict)
    read: bool = False


def fetch(client: SendGridClient, job_id: str, *, errors: bool = True) -> JobAnswer:
    """Ask about one job once, and read its errors file when it ended with failures (with
    `errors`). Only asks: nothing is recorded, so any thread may fetch (the sink's poller does)."""
    status = client.import_status(job_id)
    url = jobs.errors_url(status) if errors else None
    text = client.download_errors(url) if url else None
    return JobAnswer(status, dict(jobs.parse_errors_file(text)) if text else {}, read=url is not None)


def record(job: JobEntry, answer: JobAnswer, deliveries: jobs.Deliveries | None) -> dict[str, str] | None:
    """Record an answer on the job's entry (and, with `deliveries`, the failures of a job that
    ended errored or failed). Returns the contacts it did not apply, by email, with SendGrid's
    most common reason kept on the job (as `reason`, any quoted value taken out: the report
    holds no profile value); None when unknown which (or not asked): then none of the job's
    contacts counts as applied. SendGrid's status answer has no field for the reason (OpenAPI
    ContactImport; no recording shows one): the errors file is where it is."""
    jobs.apply_status(job, answer.status)
    if jobs.is_pending(job) or job["status"] == "completed":
        return None
    log.warning("import job %s ended %s with %d contact(s) not applied", job["job_id"], job["status"], job.get("failed", 0))
    failures = answer.failures
    if failures:
        job["reason"] = jobs.safe_reason(failures.values())
    if deliveries is not None:
        deliveries.failed(job["job_id"], failures or None)
    if answer.read and jobs.accounted_failures(job, failures or None) is None:  # which ones is not known: none applied
        job["failed"] = job["contacts"]
    return failures or None


def poll_once(
    client: SendGridClient, pending: list[JobEntry], deliveries: jobs.Deliveries | None, *, errors: bool | None = None
) -> list[JobEntry]:
    """Ask once about each pending job and record the answer; the ones still pending. A job that
    ended with failures has its errors file read (`errors`; by default with `deliveries`), which
    gives SendGrid's reason and, with `deliveries`, records which contacts failed."""
    for job in pending:
        record(job, fetch(client, job["job_id"], errors=deliveries is not None if errors is None else errors), deliveries)
    return [job for job in pending if jobs.is_pending(job)]


def ask(client: SendGridClient, job: JobEntry) -> dict[str, str] | None:
    """Poll one job once and record the answer on it (see `record`)."""
    return record(job, fetch(client, job["job_id"]), None)


def confirm(ctx: RunContext, deliveries: jobs.Deliveries) -> None:
    """Poll the run's import jobs until each is final or the wait allowed is over.

    A round asks about the jobs oldest first and stops at the first one still pending: the later
    ones are asked once it has ended (the run waits for them all anyway), so while SendGrid works
    a round costs one request, however many jobs the run made (a 1,000,000-profile run makes
    ~50; asking about all of them every round cost up to 50 requests a round). After a round in
    which a job ended the wait starts again from `first_interval` (SendGrid is getting through
    them); after one in which none did, it doubles up to `max_interval`. When the wait is over,
    every job still pending is asked once more, so the report says which ones really are."""
    polling, services = ctx.services.job_polling, ctx.services
    deadline = services.clock() + polling.max_wait
    interval = polling.first_interval
    pending = [job for job in ctx.report.jobs if jobs.is_pending(job)]
    while pending:
        ended = _ended_in_turn(ctx.sendgrid(), pending, deliveries)
        if not pending:
            break
        if services.clock() + interval > deadline:
            pending[1:] = poll_once(ctx.sendgrid(), pending[1:], deliveries)  # the head was just asked
            break
        services.sleep(interval)
        interval = polling.first_interval if ended else min(interval * 2, polling.max_interval)
    ctx.report.counts.failed = sum(job.get("failed", 0) for job in ctx.report.jobs)
    if pending:
        log.info(
            "export '%s': %d import job(s) still pending; the status endpoint and the next run check them", ctx.name, len(pending)
        )


def _ended_in_turn(client: SendGridClient, pending: list[JobEntry], deliveries: jobs.Deliveries) -> int:
    """Ask about `pending` jobs in turn until one is still pending; the ones that ended leave the
    list. How many ended."""
    ended = 0
    while pending and not poll_once(client, pending[:1], deliveries):
        del pending[0]
        ended += 1
    return ended


def settle_earlier_jobs(ctx: RunContext) -> None:
    """Settle the record in the run's workspace before it plans (see `settle_record_file`)."""
    if settle_record_file(ctx.sendgrid, ctx.workspace.record, ctx.report.settled):
        log.info("export '%s': earlier import jobs settled: %s", ctx.name, ctx.report.settled)


def settle_record_file(client: Callable[[], SendGridClient], path: Path, settled: dict[str, int]) -> bool:
    """Earlier runs left contacts whose import jobs were still pending in the record, marked with
    the job's id (not sent again meanwhile). Ask about each such job once: applied contacts become
    settled entries, failed ones leave the record (they are sent again), pending ones stay.
    `settled` counts them; whether the file held any mark (and was rewritten)."""
    if not _has_pending_marks(path):
        return False
    with open(path, "rb") as record:
        pending = {pending_job(entry.extra) for entry in map(parse_record, record) if entry and entry.extra}
    pending.discard(b"")
    answers: dict[bytes, tuple[JobEntry, dict[str, str] | None]] = {}
    for job_id in sorted(pending):
        job: JobEntry = {"job_id": job_id.decode(), "contacts": 0, "status": "pending"}
        try:
            answers[job_id] = (job, ask(client(), job))
        except ExportError as exc:  # one job's trouble does not stop the run: it stays pending
            log.warning("import job %s not settled: %s", job_id.decode(errors="replace")[:100], exc.message)
            answers[job_id] = (job, None)

    rules = {job_id: jobs.applied_by(job, failures) for job_id, (job, failures) in answers.items()}
    said = {job_id: jobs.said_not_applied(job, failures) for job_id, (job, failures) in answers.items()}

    def outcome(job_id: bytes, email: bytes) -> bool | None:
        ok = rules[job_id](email.decode())
        settled["pending" if ok is None else "applied" if ok else "not_applied"] += 1
        return ok

    settled_path = path.with_suffix(".settled")
    with open(path, "rb") as record, open(settled_path, "wb") as out:
        out.writelines(diff.settle_record(record, outcome, lambda job_id, email: not said[job_id](email.decode())))
    settled_path.replace(path)
    return True


_PENDING_MARK = re.compile(rb";[^\n]")  # ";" then a job id; an entry's unset code alone ends ";\n"


def _has_pending_marks(path: Path, block: int = 1 << 20) -> bool:
    """Whether any record line names a pending job, read in blocks (memory stays flat)."""
    with open(path, "rb") as record:
        carry = b""
        while data := record.read(block):
            if _PENDING_MARK.search(carry + data):
                return True
            carry = data[-1:]
    return False


def list_import_failures(ctx: RunContext, deliveries: jobs.Deliveries, mask: bytearray | None) -> None:
    """One line in the rejects file per contact a failed job did not apply, as `jobs.applied_by`
    says (every contact of the job when its errors file could not be read or does not account for
    every contact that failed), in one pass over the key file."""
    spans = deliveries.failed_spans()
    if not spans:
        return
    known = {job["job_id"]: job for job in ctx.report.jobs}
    status = {job_id: str(known[job_id]["status"]) if job_id in known else "failed" for _, _, job_id in spans}
    rules = {
        job_id: jobs.applied_by(known.get(job_id, {"status": "failed"}), deliveries.failures.get(job_id))
        for _, _, job_id in spans
    }
    starts = [first for first, _, _ in spans]
    last_end = max(end for _, end, _ in spans)
    with open(ctx.workspace.keys, "rb") as keys:  # in spill order: line n is position n
        for position, line in enumerate(keys):
            if position >= last_end:
                break
            index = bisect.bisect_right(starts, position) - 1
            if index < 0 or position >= spans[index][1] or (mask is not None and not mask[position]):
                continue
            if position in deliveries.refused:
                continue
            job_id = spans[index][2]
            key = parse_key(line)
            email = key.email.decode()
            if rules[job_id](email) is False:
                failures = deliveries.failures.get(job_id) or {}
                detail = failures.get(email) or f"the import job ended {status[job_id]}"
                if status[job_id] == "errored" and failures and email not in failures:
                    detail += "; its errors file does not name every contact that failed"
                ctx.rejects.list(key.ref, IMPORT_FAILED, detail)
