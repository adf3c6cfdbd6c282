"""The run report's status: one Literal type, its final and unfinished groups. Pure."""

from __future__ import annotations

from typing import get_args

from shared.report import FINISHED, UNFINISHED, RunReport, RunStatus


def test_every_run_status_is_either_finished_or_unfinished() -> None:
    assert sorted(FINISHED + UNFINISHED) == sorted(get_args(RunStatus))
    assert not set(FINISHED) & set(UNFINISHED)


def test_a_report_is_running_until_it_finishes() -> None:
    report = RunReport(export="vip", trigger="test", dry_run=True)
    assert report.to_dict()["status"] == "running" and report.sync_mode == "upsert"
    report.finish()  # a dry run: nothing to send, so it succeeded
    assert report.to_dict()["status"] == "succeeded"
