"""The run report's status: one Literal type, its final and unfinished groups. Pure."""

from __future__ import annotations

from typing import get_args

from shared.report import CONFIRMING, FINISHED, UNFINISHED, RunReport, RunStatus, status_of


def test_every_run_status_is_finished_unfinished_or_confirming() -> None:
    assert sorted((*FINISHED, *UNFINISHED, CONFIRMING)) == sorted(get_args(RunStatus))
    assert not set(FINISHED) & set(UNFINISHED) and CONFIRMING not in FINISHED + UNFINISHED


def test_pending_jobs_keep_a_run_confirming_until_they_end_or_are_no_longer_awaited() -> None:
    report = RunReport(export="vip", trigger="test", dry_run=False)
    report.plan = {"upsert": 10, "remove": 0}
    report.counts.sent = 10
    report.jobs = [{"job_id": "j1", "contacts": 10, "status": "pending"}]
    report.finish("2999-01-01T00:00:00.000Z")
    assert report.status == "confirming" and report.awaiting == {"jobs": 1, "until": "2999-01-01T00:00:00.000Z"}
    stored = report.to_dict()
    assert status_of(stored, now="3000-01-01T00:00:00.000Z") == "partial"  # no longer awaited: never succeeded
    stored["jobs"][0]["status"] = "completed"
    assert status_of(stored) == "succeeded"


def test_a_report_is_running_until_it_finishes() -> None:
    report = RunReport(export="vip", trigger="test", dry_run=True)
    assert report.to_dict()["status"] == "running" and report.sync_mode == "upsert"
    report.finish()  # a dry run: nothing to send, so it succeeded
    assert report.to_dict()["status"] == "succeeded"
