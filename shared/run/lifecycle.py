"""A run's lifecycle, enforced here (docs/design.md, "A run's lifecycle"):

    queued -> running -> confirming -> succeeded | partial | failed

- A run invocation ends with `conclude`: `running` when the run goes on in another invocation,
  `confirming` while SendGrid's import jobs are pending and awaited (JOB_WAIT_SECONDS after the
  run's last request: `awaiting.until`), else final.
- A confirming run is noted in the state container (`mark_confirming`), so that any invocation
  finds it, however many runs came after it: a confirm message (`recheck_run` of its own run), the
  status endpoint and the next run (`recheck`, every confirming run of the export). Each asks
  SendGrid once about the pending jobs, stores the answers, and finalises the run when its jobs
  are all final or no longer awaited.
- Only the transition to a final status sends the run's ExportRun event (`announce`), exactly
  once: the run itself when it ends final, or for a confirming run the invocation whose
  conditional write of the final report wins (the others find it final and do nothing).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from shared import telemetry
from shared.errors import ExportError
from shared.report import CONFIRMING, RunReport, awaited, from_dict, is_final, refresh_status
from shared.run.confirm import poll_once
from shared.sendgrid import jobs
from shared.sendgrid.jobs import JobEntry
from shared.services import Services

log = logging.getLogger(__name__)


def awaited_until(services: Services) -> str:
    """Until when a run ending now awaits its import jobs (JOB_WAIT_SECONDS from now)."""
    until = datetime.now(UTC) + timedelta(seconds=services.job_polling.awaited)
    return until.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def conclude(report: RunReport, services: Services, *, continues: bool = False) -> None:
    """Set the status a run invocation leaves (see the module docstring); a confirming run is
    noted before its report is stored, so no confirming report is ever out of reach."""
    report.finish(awaited_until(services), continues=continues)
    if report.status == CONFIRMING and not report.dry_run:
        services.state.mark_confirming(report.export, report.run_id)


def announce(report: RunReport | dict[str, Any]) -> None:
    """Send the ExportRun event (and metrics) of a run that just became final, after its final
    report is stored (a kill in between loses the event rather than sending it twice). Never
    raises: a stored report that does not read as one sends none."""
    try:
        final = report if isinstance(report, RunReport) else from_dict(report)
    except (TypeError, ValueError, AttributeError) as exc:
        log.error("export run event not sent: the report does not read (%s)", type(exc).__name__)
        return
    if is_final(final.status):
        telemetry.record_run(final)


def recheck(name: str, services: Services, *, by: str) -> dict[str, Any] | None:
    """Re-check every run of the export that awaits its import jobs (see `recheck_run`); one that
    cannot be re-checked now is left for the next look. Returns the latest report."""
    found = services.state.latest_report_and_etag(name)
    latest = found[0] if found else None
    run_ids = set(services.state.confirming_runs(name))
    if latest is not None and latest.get("status") == CONFIRMING:
        run_ids.add(str(latest.get("run_id")))  # a report stored as the run's marker was lost
    for run_id in sorted(run_ids):
        try:
            checked = recheck_run(services, name, run_id, by=by)
        except ExportError as exc:
            log.warning("export '%s': run %s not re-checked: %s", name, run_id, exc.message)
            continue
        if latest is not None and checked is not None and checked.get("run_id") == latest.get("run_id"):
            latest = checked
    return latest


def recheck_run(services: Services, name: str, run_id: str, *, by: str) -> dict[str, Any] | None:
    """Ask SendGrid once about the pending import jobs of a confirming run, store the answers,
    and finalise the run when they are all final or no longer awaited. The run's report as it
    stands (None: there is none)."""
    found = services.state.report_and_etag(name, run_id)
    if found is None:
        services.state.unmark_confirming(name, run_id)
        return None
    report, etag = found
    if report.get("status") != CONFIRMING:
        if is_final(report.get("status")):
            services.state.unmark_confirming(name, run_id)
        return report
    pending = [cast(JobEntry, job) for job in report.get("jobs", []) if isinstance(job, dict) and jobs.is_pending(job)]
    if pending:
        client = services.client_for_export(name)  # the export's own SendGrid account
        try:
            # SendGrid's reason from the errors file; which contacts failed is settled with the record.
            poll_once(client, pending, None, errors=True)
        except ExportError as exc:
            if awaited(report):
                log.warning("export '%s': import jobs of run %s not re-checked: %s", name, run_id, exc.message)
                return report
        finally:
            client.close()
    refresh_status(report)
    if not is_final(report["status"]):
        services.state.save_report_if(report, etag)  # what was learnt; lost if another wrote first
        return report
    report["finalised_by"] = by
    if not services.state.save_report_if(report, etag):
        return services.state.report(name, run_id)  # another invocation wrote it first: its word
    log.info("export '%s': run %s is %s (%s)", name, run_id, report["status"], by)
    announce(report)
    services.state.unmark_confirming(name, run_id)
    return report
