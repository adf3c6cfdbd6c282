"""Nothing changed, nothing to do: a run of the same snapshot and definition as the export's last
succeeded run (its jobs all final, none of earlier runs left pending in the record, no
full_refresh) ends at once, `succeeded` with
`unchanged_snapshot: true`, without a SendGrid request. An event and the timer on the same
snapshot then cost one metadata read.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.report import FINISHED, RunReport
from shared.sendgrid import jobs
from shared.source.blob import Segment
from shared.state.store import StateStore

log = logging.getLogger(__name__)

LOOK_BACK = 10  # earlier reports looked at for the last finished run


def last_finished(state: StateStore, export: str, this_run: str) -> dict[str, Any] | None:
    """The report of the export's last finished, sending run other than `this_run` (None: none,
    or it could not be read). Run ids sort by the second they were made, and two runs may share
    one: the newest reports are looked at, and the one that finished last wins."""
    try:
        found, _ = state.list_reports(export, LOOK_BACK)
    except Exception:  # noqa: BLE001 - an unreadable history just means: do the work
        return None
    finished = [
        report
        for run_id, report in found
        if run_id != this_run
        and isinstance(report, dict)
        and not report.get("dry_run")
        and report.get("status") in FINISHED
        and isinstance(report.get("finished_at"), str)
    ]
    return max(finished, key=lambda report: report["finished_at"], default=None)


def same_as_before(report: RunReport, segment: Segment, previous: dict[str, Any] | None) -> bool:
    """Whether this run would do nothing: the previous finished run succeeded on the very same
    snapshot and definition, and left no job pending."""
    if previous is None or previous.get("status") != "succeeded" or not report.definition:
        return False
    source = previous.get("source") or {}
    return (
        source.get("metadata") == segment.metadata_blob
        and source.get("etag") == segment.etag
        and previous.get("definition") == report.definition
        and not any(jobs.is_pending(job) for job in previous.get("jobs", []) if isinstance(job, dict))
        and not (previous.get("settled") or {}).get("pending")
    )  # earlier runs' jobs left in the record


def finish_unchanged(report: RunReport, previous: dict[str, Any]) -> None:
    """The report of a run that had nothing to do: the segment's counts as last read, all unchanged."""
    counts = previous.get("counts") or {}
    report.unchanged_snapshot = True
    report.counts.read = int(counts.get("read", 0))
    report.counts.valid = report.counts.unchanged = int(counts.get("valid", 0))
    report.counts.duplicates = int(counts.get("duplicates", 0))
    report.counts.rejected = int(counts.get("rejected", 0))
    report.plan = {"upsert": 0, "remove": 0}
    log.info(
        "export '%s': the snapshot and definition are those of run %s, which succeeded: nothing to do",
        report.export,
        previous.get("run_id"),
    )
