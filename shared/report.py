"""The run report: the public contract stored in the state container and returned by HTTP.

It carries counts, reasons and ids only: no profile value and no secret.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from shared.definitions import SyncMode
from shared.errors import ExportError
from shared.sendgrid.jobs import JobEntry

# A run's status, as its report says it: `queued` (stored when the run is queued), `running` (a
# worker runs it), then one of FINISHED: status_of's verdict, or `failed` written by the engine
# for a run that could not run or was abandoned (engine/liveness.py).
RunStatus = Literal["queued", "running", "succeeded", "partial", "failed"]
FINISHED: tuple[RunStatus, ...] = ("succeeded", "partial", "failed")  # a run's final statuses
UNFINISHED: tuple[RunStatus, ...] = ("queued", "running")  # a report some run is still writing


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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

    def reject(self, reason: str) -> None:
        self.counts.rejected += 1
        self.rejects[reason] += 1

    def finish(self) -> None:
        self.finished_at = utc_now()
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
        }


def status_of(report: dict[str, Any]) -> RunStatus:
    """succeeded: every contact planned was accepted (or refused by SendGrid as invalid, which
    makes it a reject), none failed in an import job, and every leaver planned was removed."""
    counts, plan = report["counts"], report["plan"]
    if report["error"] is not None:
        return "partial" if counts["sent"] or counts["removed"] else "failed"
    if report["dry_run"]:
        return "succeeded"
    refused = report["rejects"].get("rejected by SendGrid", 0)
    complete = counts["sent"] + refused == plan["upsert"] and counts["removed"] == plan["remove"]
    return "succeeded" if complete and not counts["failed"] and not report["resumable"] else "partial"


def refresh_status(report: dict[str, Any]) -> None:
    """Recompute a stored report's failed count and status after its jobs were re-checked."""
    report["counts"]["failed"] = sum(job.get("failed", 0) for job in report["jobs"])
    report["status"] = status_of(report)
