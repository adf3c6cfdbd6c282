"""What the run engine reads and writes of run reports: a queued or running run's report, a run's
report by id, and whether a `queued`/`running` report is stale (its run can no longer be going on).

Stale: the report's status is `queued` or `running`, no run holds the export's lease, and the
report was last written (`updated_at`, stamped on every write) longer ago than `stale_after`:
an invocation's whole time (host.json's functionTimeout, 30 minutes: a report is written at the
start and the end of one, not in between), the queue trigger's message visibility (10 minutes,
renewed while a worker holds the message: a crashed worker's message reappears after it), plus
maxDequeueCount retries at host.json's visibilityTimeout, plus an event's settle delay. Within
that window a retry may still come, so the run is taken for alive; after it, its message has
gone to the poison queue or is lost, and the report is rewritten `failed` with `internal_error`
and `abandoned: true` when it is next read (a status read or a POST), and its ExportRun event
sent. A late message of an abandoned run changes nothing (the run is final; the next run
resumes from the export's checkpoint).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from shared.errors import ExportError
from shared.report import UNFINISHED, RunStatus, is_final, utc_now
from shared.run import lifecycle
from shared.state.store import StateStore

if TYPE_CHECKING:
    from shared.engine.messages import Work
    from shared.services import App

log = logging.getLogger(__name__)

FUNCTION_TIMEOUT_SECONDS = 30 * 60  # host.json functionTimeout: the longest an invocation runs
MESSAGE_VISIBILITY_SECONDS = 10 * 60  # the queue trigger's visibility for a message it is processing
RETRY_DELAY_SECONDS = 30  # host.json extensions.queues.visibilityTimeout
MAX_TRIES = 5  # host.json extensions.queues.maxDequeueCount


class Busy(ExportError):
    """409 run_in_progress naming the run that is queued or running."""

    def __init__(self, name: str, run_id: str, status: RunStatus) -> None:
        super().__init__("run_in_progress", f"export '{name}' has run {run_id} {status}; try again when it ends")
        self.run_id = run_id


def stale_after(app: App) -> float:
    return (
        FUNCTION_TIMEOUT_SECONDS
        + MESSAGE_VISIBILITY_SECONDS
        + MAX_TRIES * RETRY_DELAY_SECONDS
        + app.settings.snapshot_settle_seconds
    )


def stamp(report: dict[str, Any]) -> dict[str, Any]:
    report["updated_at"] = utc_now()
    return report


def save(app: App, report: dict[str, Any]) -> None:
    app.services.state.save_report(stamp(report))


def report_of(state: StateStore, name: str, run_id: str) -> dict[str, Any] | None:
    """The stored report of run `run_id` (None: none, or not readable)."""
    try:
        return state.report(name, run_id)
    except ExportError as exc:
        log.warning("export '%s': report of run %s not read: %s", name, run_id, exc.message)
        return None


def lease_free(app: App, name: str) -> bool:
    """Whether no run holds the export's lease (taken and given back at once to find out)."""
    try:
        lease = app.services.state.acquire_run_lease(name, 15)
    except ExportError as exc:
        if exc.code == "run_in_progress":
            return False
        raise
    lease.release()
    return True


def _age(report: dict[str, Any]) -> float:
    when = report.get("updated_at") or report.get("started_at") or ""
    try:
        written = datetime.fromisoformat(str(when).replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - written).total_seconds()


def settle_if_stale(app: App, report: dict[str, Any], etag: str | None = None) -> dict[str, Any]:
    """The report as it stands: a stale `queued`/`running` one is rewritten failed (see above)."""
    if report.get("status") not in UNFINISHED or _age(report) <= stale_after(app):
        return report
    name = str(report.get("export"))
    if not lease_free(app, name):
        return report
    report = {
        **report,
        "status": "failed",
        "abandoned": True,
        "finished_at": utc_now(),
        "error": ExportError(
            "internal_error",
            "the run's worker stopped and no retry came (its message is in the poison queue or was lost); see the function log",
        ).to_dict(),
    }
    log.warning("export '%s': run %s was %s with no worker; marked failed", name, report.get("run_id"), report.get("status"))
    state = app.services.state
    if etag is None:
        found = state.latest_report_and_etag(name)
        if found is None or found[0].get("run_id") != report.get("run_id"):
            return report  # an older run's report: shown as it stands, latest.json left alone
        etag = found[1]
    if state.update_latest_report(report, etag):  # unless a run wrote it meanwhile
        lifecycle.announce(report)
    return report


def refuse_if_active(app: App, name: str) -> str | None:
    """Raise Busy while a run of the export is queued or running (and not stale); else the etag
    of `latest.json` as read and judged (None: the export never ran), for a conditional write
    after it. A stale report rewritten meanwhile (by this call or another) is read and judged again."""
    state = app.services.state
    for _ in range(3):
        try:
            found = state.latest_report_and_etag(name)
        except ExportError:  # an unreadable latest report must not block runs: the run records its own
            return state.latest_etag(name)
        if found is None:
            return None
        report, etag = found
        if settle_if_stale(app, report, etag) is report:  # not stale: judged as it is
            if report.get("status") in UNFINISHED:
                raise Busy(name, str(report.get("run_id")), cast(RunStatus, report.get("status")))
            return etag
    raise ExportError("run_in_progress", f"export '{name}' is changing; try again")


def fail(app: App, work: Work, stored: dict[str, Any] | None, error: ExportError) -> None:
    """End a queued run that cannot run with a stored `failed` report and its ExportRun event; a
    run that is final already stays as it is."""
    log.error("export '%s': run %s failed: %s", work.export, work.run_id, error.message)
    base = stored or {
        "export": work.export,
        "trigger": work.trigger,
        "dry_run": False,
        "started_at": utc_now(),
        "counts": {},
        "jobs": [],
    }
    if stored is not None and is_final(stored.get("status")):
        return  # final already, its event sent: it stays as it is
    report = {**base, "run_id": work.run_id, "status": "failed", "finished_at": utc_now(), "error": error.to_dict()}
    save(app, report)
    lifecycle.announce(report)
