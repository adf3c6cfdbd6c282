"""The public entry of a run: `run_export` (and `recheck_jobs`, for the status endpoint).

A run is a straight list of stages (`shared/run/`): prepare, read, compare, send, remove,
confirm, record; `flows.py` says which of three ways it goes (a dry run's plan, a streamed first
delivery, a delta delivery). No stage holds the segment in memory: spill and keys are files,
sorting works in bounded runs, and de-duplication keeps a small hash per profile.

Safety: one run per export at a time (a blob lease, `lease.py`); after every accepted request a
checkpoint records how far the run got, so a run killed halfway is resumed by the next run on the
same snapshot and definition, resending at most one request's contacts; a run near the host's
time limit (or that lost its lease) stops by itself, checkpointed, `partial` + `resumable`.
"""

from __future__ import annotations

import logging
import tempfile
import traceback
from pathlib import Path
from typing import Any

from shared import telemetry
from shared.definitions import parse_definition
from shared.errors import ExportError
from shared.lease import RunLease
from shared.rejects import RejectsLog
from shared.report import RunReport
from shared.run import flows
from shared.run.confirm import recheck_jobs
from shared.run.context import RunContext, RunOptions, Workspace, stage
from shared.run.reading import prepare
from shared.services import JobPolling, Services
from shared.state import StateStore

__all__ = ["JobPolling", "RunOptions", "Services", "recheck_jobs", "run_export"]

log = logging.getLogger(__name__)


def run_export(
    name: str,
    raw_definition: dict[str, Any],
    services: Services,
    *,
    trigger: str,
    options: RunOptions = RunOptions(),
) -> RunReport:
    """Run one export and return its report (stored in the state container, but for a dry run,
    which writes nothing anywhere).

    A failed run does not raise: the report's `error` says what went wrong, and its code maps to
    an HTTP status. Only `run_in_progress` (another run holds the export) raises ExportError,
    since such a run never started and stores no report.
    """
    if options.dry_run:
        return _run(name, raw_definition, services, trigger, options, None)
    lease = services.state.acquire_run_lease(name, services.lease_seconds)
    try:
        try:
            recheck_jobs(name, services)
        except ExportError as exc:  # an unreadable earlier report must not stop this run
            log.warning("export '%s': earlier import jobs not re-checked: %s", name, exc.message)
        return _run(name, raw_definition, services, trigger, options, lease)
    finally:
        lease.release()


def _run(name: str, raw_definition: dict[str, Any], services: Services, trigger: str, options: RunOptions,
         lease: RunLease | None) -> RunReport:
    report = RunReport(export=name, trigger=trigger, dry_run=options.dry_run, full_refresh=options.full_refresh)
    log.info("export '%s': run %s started (trigger=%s, dry_run=%s, full_refresh=%s)", name, report.run_id, trigger,
             options.dry_run, options.full_refresh)
    writes = not options.dry_run
    with tempfile.TemporaryDirectory(prefix="sg-export-", dir=services.workdir) as tmp:
        ctx: RunContext | None = None
        try:
            definition = parse_definition(raw_definition)
            report.sync_mode = definition.sync_mode
            workspace = Workspace(Path(tmp))
            ctx = RunContext(definition, services, report, options, workspace, RejectsLog(workspace.rejects, report),
                             lease, services.clock())
            with stage(report, "prepare"):
                prepared = prepare(ctx, writes)
            if not writes:
                flows.plan_only(ctx, prepared)
            elif prepared.first_delivery:
                flows.first_delivery(ctx, prepared)
            else:
                flows.delta_delivery(ctx, prepared)
        except ExportError as exc:
            report.error = exc
        except Exception as exc:  # a bug: keep the type and where, not the message (it may quote data)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("export '%s': unexpected %s at %s:%s", name, type(exc).__name__, Path(where.filename).name,
                      where.lineno)
            report.error = ExportError("internal_error", f"unexpected {type(exc).__name__}; see the function log")
        finally:
            if ctx is not None:
                ctx.close()
                report.counts.valid -= ctx.progress.refused  # refused by SendGrid: rejects, not valid
                if ctx.rejects.lines and writes:
                    report.rejects_blob = _save_rejects(services.state, report, ctx.workspace.rejects)
            report.finish()
            telemetry.record_run(report, services.state)  # the ExportRun event, metrics (when configured)
            if writes:
                try:
                    services.state.save_report(report.to_dict())
                except ExportError as exc:
                    log.error("export '%s': could not store the run report: %s", name, exc.message)
    _log_summary(report)
    return report


def _save_rejects(state: StateStore, report: RunReport, path: Path) -> str | None:
    try:
        with open(path, "rb") as stream:
            return state.save_rejects(report.export, report.run_id, stream)
    except ExportError as exc:
        log.error("export '%s': could not store the rejects file: %s", report.export, exc.message)
        return None


def _log_summary(report: RunReport) -> None:
    c = report.counts
    log.info(
        "export '%s': run %s %s; read=%d valid=%d rejected=%d duplicates=%d unchanged=%d sent=%d failed=%d "
        "removed=%d upserts=%d retries=%d%s",
        report.export, report.run_id, report.status, c.read, c.valid, c.rejected, c.duplicates, c.unchanged, c.sent,
        c.failed, c.removed, report.upserts, report.retries,
        f" error={report.error.code}" if report.error else "",
    )
