"""The run report: the public contract stored in the state container and returned by HTTP.

It carries counts, reasons and ids only: no profile value and no secret.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.definitions import SyncMode
from shared.errors import ExportError
from shared.sendgrid.jobs import JobEntry, is_pending

# A run's lifecycle, as its report says it (docs/design.md, "A run's lifecycle"):
#
#   queued -> running -> confirming -> succeeded | partial | failed
#
# `queued`: stored when the run is queued; `running`: a worker runs it (also between the
# invocations of a run that continues); `confirming`: everything is sent, and SendGrid's import
# jobs are still pending (awaited until `awaiting.until`); then one of FINISHED. A status read while
# jobs are pending never shows a final status. Only the transition to a final status emits the
# run's ExportRun event (shared/run/lifecycle.py), once.
RunStatus = Literal["queued", "running", "confirming", "succeeded", "partial", "failed"]
FINISHED: tuple[RunStatus, ...] = ("succeeded", "partial", "failed")  # a run's final statuses
UNFINISHED: tuple[RunStatus, ...] = ("queued", "running")  # a report some run is still writing
CONFIRMING: RunStatus = "confirming"  # sent; import jobs pending; no run holds the export


_RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")  # report.new_run_id; ASCII digits only


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_run_id(text: object) -> bool:
    """Whether `text` is a run id as `new_run_id` makes them (`20260101T020000Z-0a1b2c`): the one
    check of a run id that comes from outside (queue messages, HTTP routes) or names a blob."""
    return isinstance(text, str) and _RUN_ID.fullmatch(text) is not None


def new_run_id() -> str:
    # Sortable by time, unique across concurrent starts.
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class Counts:
    read: int = 0
    valid: int = 0
    rejected: int = 0
    duplicates: int = 0
    sent: int = 0
    failed: int = 0  # accepted, but SendGrid's import job did not apply them
    unchanged: int = 0  # valid and already delivered as they are: not sent again
    removed: int = 0  # unlinked from the lists (mirror mode)


@dataclass
class RunReport:
    export: str
    trigger: str
    dry_run: bool
    run_id: str = field(default_factory=new_run_id)
    started_at: str = field(default_factory=utc_now)
    finished_at: str | None = None
    status: RunStatus = "running"
    source: dict[str, Any] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    rejects: Counter[str] = field(default_factory=Counter)
    rejects_blob: str | None = None
    upserts: int = 0
    retries: int = 0
    jobs: list[JobEntry] = field(default_factory=list)
    error: ExportError | None = None
    resumable: bool = False  # stopped early on purpose; the next run goes on from the checkpoint
    resumed_from: dict[str, Any] | None = None
    sync_mode: SyncMode = "upsert"
    full_refresh: bool = False
    plan: dict[str, int] = field(default_factory=lambda: {"upsert": 0, "remove": 0})
    removal_jobs: list[str] = field(default_factory=list)
    streamed: bool = False  # contacts were sent while the segment was read (a first delivery)
    held_back: str | None = None  # why planned removals were not made (the report is then partial)
    definition: str = ""  # the definition's fingerprint (what a run sends depends on)
    unchanged_snapshot: bool = False  # the same snapshot and definition as the last succeeded run: nothing to do
    # Contacts of earlier runs whose import jobs were pending, settled before this run planned.
    settled: dict[str, int] = field(default_factory=lambda: {"applied": 0, "not_applied": 0, "pending": 0})
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    # While confirming: how many import jobs are pending, and until when they are awaited
    # (ISO time; JOB_WAIT_SECONDS after the run's last request). Past it the run is final.
    awaiting: dict[str, Any] | None = None
    finalised_by: str | None = None  # what made the run final, when not the run itself

    def reject(self, reason: str) -> None:
        self.counts.rejected += 1
        self.rejects[reason] += 1

    def finish(self, awaited_until: str | None = None, *, continues: bool = False) -> None:
        """The status this invocation leaves: `running` for a run that goes on in another
        invocation (`continues`: stopped early on purpose, or ended by an unexpected error that
        the queue retries), `confirming` while import jobs are pending and awaited (until
        `awaited_until`), else the final verdict."""
        self.finished_at = utc_now()
        if continues and (self.resumable or (self.error is not None and self.error.code == "internal_error")):
            self.status = "running"
            return
        pending = sum(1 for job in self.jobs if is_pending(job))
        self.awaiting = {"jobs": pending, "until": awaited_until} if pending and awaited_until else None
        self.status = status_of(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "export": self.export,
            "trigger": self.trigger,
            "dry_run": self.dry_run,
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "source": self.source,
            "counts": {
                "read": self.counts.read,
                "valid": self.counts.valid,
                "rejected": self.counts.rejected,
                "duplicates": self.counts.duplicates,
                "sent": self.counts.sent,
                "failed": self.counts.failed,
                "unchanged": self.counts.unchanged,
                "removed": self.counts.removed,
            },
            "sync_mode": self.sync_mode,
            "full_refresh": self.full_refresh,
            "plan": dict(self.plan),
            "removal_jobs": self.removal_jobs,
            "streamed": self.streamed,
            "held_back": self.held_back,
            "settled": dict(self.settled),
            "definition": self.definition,
            "unchanged_snapshot": self.unchanged_snapshot,
            "timings": {stage: round(seconds, 3) for stage, seconds in self.timings.items()},
            "rejects": dict(sorted(self.rejects.items())),
            "rejects_blob": self.rejects_blob,
            "requests": {"upserts": self.upserts, "retries": self.retries},
            "jobs": self.jobs,
            "error": self.error.to_dict() if self.error else None,
            "resumable": self.resumable,
            "resumed_from": self.resumed_from,
            "awaiting": self.awaiting,
            "finalised_by": self.finalised_by,
        }


def from_dict(stored: dict[str, Any]) -> RunReport:
    """A stored report as a RunReport (for its ExportRun event): what the event reads."""
    counts, requests, error = stored.get("counts"), stored.get("requests"), stored.get("error")
    counts = counts if isinstance(counts, dict) else {}
    requests = requests if isinstance(requests, dict) else {}
    status = stored.get("status")
    report = RunReport(
        export=str(stored.get("export", "")),
        trigger=str(stored.get("trigger", "")),
        dry_run=bool(stored.get("dry_run")),
        run_id=str(stored.get("run_id", "")),
        started_at=str(stored.get("started_at") or utc_now()),
        finished_at=stored.get("finished_at"),
        status=status if status in FINISHED + UNFINISHED + (CONFIRMING,) else "failed",
        counts=Counts(**{k: int(v) for k, v in counts.items() if k in Counts.__dataclass_fields__ and isinstance(v, int)}),
        upserts=int(requests.get("upserts", 0)),
        retries=int(requests.get("retries", 0)),
        error=ExportError(str(error.get("code")), str(error.get("message"))) if isinstance(error, dict) else None,
        sync_mode="mirror" if stored.get("sync_mode") == "mirror" else "upsert",
        unchanged_snapshot=bool(stored.get("unchanged_snapshot")),
        finalised_by=stored.get("finalised_by"),
    )
    return report


def status_of(report: dict[str, Any], now: str | None = None) -> RunStatus:
    """The status a report's facts give. `confirming` while an import job is pending and the
    report's `awaiting.until` (ISO time) is still ahead of `now` (default: the present). Else final:
    succeeded when every contact planned was accepted (or refused by SendGrid as invalid, which
    makes it a reject) and applied (no job failed, none still pending), and every leaver planned
    was removed; partial when some work was done, failed when none was."""
    counts, plan = report["counts"], report["plan"]
    pending = any(isinstance(job, dict) and is_pending(job) for job in report.get("jobs", []))
    if pending and not report["dry_run"] and awaited(report, now):
        return "confirming"
    if report["error"] is not None:
        return "partial" if counts["sent"] or counts["removed"] else "failed"
    if report["dry_run"]:
        return "succeeded"
    refused = report["rejects"].get("rejected by SendGrid", 0)
    complete = counts["sent"] + refused == plan["upsert"] and counts["removed"] == plan["remove"]
    return "succeeded" if complete and not counts["failed"] and not pending and not report["resumable"] else "partial"


def awaited(report: dict[str, Any], now: str | None = None) -> bool:
    """Whether the report's pending import jobs are still awaited (`awaiting.until` ahead)."""
    awaiting = report.get("awaiting")
    until = awaiting.get("until") if isinstance(awaiting, dict) else None
    return isinstance(until, str) and until > (now or utc_now())


def refresh_status(report: dict[str, Any], now: str | None = None) -> None:
    """Recompute a stored report's failed count, what it awaits and its status after its jobs
    were re-checked."""
    report["counts"]["failed"] = sum(job.get("failed", 0) for job in report["jobs"])
    pending = sum(1 for job in report["jobs"] if isinstance(job, dict) and is_pending(job))
    if isinstance(report.get("awaiting"), dict):
        report["awaiting"] = {**report["awaiting"], "jobs": pending}
    report["status"] = status_of(report, now)


def is_final(status: object) -> bool:
    return status in FINISHED


def is_done(report: dict[str, Any]) -> bool:
    """Whether a run's sending is over: final (an abandoned run too: its event was sent, and the
    next run resumes from the export's checkpoint), but not stopped early to go on; or confirming
    its import jobs. A message for a run that is done changes nothing."""
    status = report.get("status")
    return (status in FINISHED and not report.get("resumable")) or status == CONFIRMING
