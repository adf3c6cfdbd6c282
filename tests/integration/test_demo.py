"""`make demo` end to end, as a person runs it: in its own process, with its own Azurite and
sandbox. It tells its story in a screenful (what it set up, the run's summary, where the full
report and the rejects CSV are, a preview of a segment not configured yet) and ends with a clear
verdict and exit code; the whole JSON is one flag away."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

SCREENFUL = 50  # lines


def demo(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.demo", "--output", str(tmp_path), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_demo_tells_its_story_in_a_screenful(tmp_path: Path) -> None:
    done = demo(tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    lines = out.splitlines()
    assert len(lines) <= SCREENFUL, f"{len(lines)} lines"
    assert lines[-1] == "demo: OK"
    assert not any(line.lstrip().startswith(("{", '"')) for line in lines)  # no raw JSON
    # What it set up.
    assert "Set up" in lines and re.search(r"HighValueCustomers: 20,000 profiles in 3 partitions, 206 of them", out)
    assert "NewsletterSignups: 2,000 sign-ups, no export defined for it yet" in out
    assert "'vip' from exports.example.json (EXPORT_DEFINITIONS_FILE)" in out
    # The run's summary: rows read, valid, rejected by reason, duplicates, sent, requests, jobs, time.
    assert re.search(r"vip: run \S+ succeeded, http, [\d.]+ s", out)
    for pattern in (
        r"rows read\s+20,000",
        r"valid\s+19,794",
        r"rejected\s+137\s+missing email 69, invalid email 68",
        r"duplicates\s+69",
        r"sent\s+19,794\s+in 1 request",
        r"import jobs\s+1\s+1 completed",
        r"19,794 contacts are now on the list in the sandbox",
    ):
        assert re.search(pattern, out), pattern
    # Where the full report and the rejects CSV are: saved, and they are what the run stored.
    report_path = re.search(r"Full report\s+(\S+)", out)
    rejects_path = re.search(r"Rejects CSV\s+(\S+)", out)
    assert report_path and rejects_path
    report = json.loads(Path(report_path[1]).read_text())
    assert report["status"] == "succeeded" and report["counts"]["rejected"] == 137
    assert len(Path(rejects_path[1]).read_text().splitlines()) == 1 + 137 + 69  # header, rejects, duplicates
    # The preview of the second segment, with suggestions.
    assert "Preview of NewsletterSignups, not configured yet" in out
    assert re.search(r"mapping\.email\s+EmailAddress", out) and re.search(r"custom_fields\.loyalty_tier\s+LoyaltyTier", out)
    assert "python -m shared preview --folder CustomerInsights_demo/SendGridExport --segment NewsletterSignups" in out


@pytest.mark.slow
def test_the_whole_json_is_one_flag_away(tmp_path: Path) -> None:
    done = demo(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # stdout is the JSON document and nothing else
    assert document["ok"] is True and all(document["checks"].values())
    assert document["definitions_from"] == "exports.example.json"
    assert document["report"]["status"] == "succeeded" and document["sandbox_contacts"] == document["report"]["counts"]["sent"]
    assert document["export_run_event"]["name"] == "ExportRun"
    assert document["preview"]["status"] == 200 and document["preview"]["answer"]["suggestions"]
    assert (ROOT / "Makefile").read_text().count("python -m tools.demo $(ARGS)") == 1  # make demo ARGS=--json
