"""The public entry of a run: `run_export` (and `confirm_run`, for a confirm message).

A run is a straight list of stages (`shared/run/`): prepare, read, compare, send, remove,
confirm, record; `flows.py` says which of three ways it goes (a dry run's plan, a streamed first
delivery, a delta delivery). No stage holds the segment in memory: spill and keys are files,
sorting works in bounded runs, and de-duplication keeps a small hash per profile.

Safety: one run per export at a time (a blob lease, `lease.py`); after every accepted request a
checkpoint records how far the run got, so a run killed halfway is resumed by the next run on the
same snapshot and definition, resending at most one request's contacts; a run near the host's
time limit (or that lost its lease) stops by itself, checkpointed, `partial` + `resumable`.
How a run's report goes from `running` to final is lifecycle.py's.
"""

from __future__ import annotations

import logging
import tempfile
import traceback
from pathlib import Path
from typing import Any

from shared.definitions import ExportDefinition, parse_definition
from shared.errors import ExportError
from shared.report import UNFINISHED, RunReport, from_dict, is_done, new_run_id
from shared.run import flows, lifecycle, unchanged
from shared.run.confirm import settle_record_file
from shared.run.context import RunContext, RunOptions, Workspace, stage
from shared.run.reading import prepare
from shared.run.rejects import RejectsLog
from shared.sendgrid.client import SendGridClient
from shared.services import JobPolling, Services
from shared.state.lease import RunLease
from shared.state.store import StateStore

__all__ = ["JobPolling", "RunOptions", "Services", "confirm_run", "queued_report", "run_export"]

log = logging.getLogger(__name__)


def run_export(
    name: str,
    raw_definition: dict[str, Any],
    services: Services,
    *,
    trigger: str,
    options: RunOptions = RunOptions(),
    run_id: str | None = None,
    continues: bool = False,
) -> RunReport:
    """Run one export and return its report (stored in the state container, but for a dry run,
    which writes nothing anywhere). Its status is what lifecycle.conclude says: with `continues`
    (a queued run, which goes on in another invocation) a run that stopped early on purpose, or
    that the queue will retry after an unexpected error, is still `running`; one whose import
    jobs are pending is `confirming`.

    A failed run does not raise: the report's `error` says what went wrong, and its code maps to
    an HTTP status. Only `run_in_progress` (another run holds the export) raises ExportError,
    since such a run never started and stores no report. With `run_id`, the report keeps that id
    (a queued run, or the run a continuation goes on with: one report for the whole run).
    """
    run_id = run_id or new_run_id()
    if options.dry_run:
        return _run(name, raw_definition, services, trigger, options, None, run_id, continues)
    lease = services.state.acquire_run_lease(name, services.lease_seconds)
    try:
        if continues:  # a queued run: another delivery of its message may have finished it meanwhile
            stored = services.state.report(name, run_id)
            if stored is not None and is_done(stored):
                log.info("export '%s': run %s is %s already; not run again", name, run_id, stored.get("status"))
                return from_dict(stored)
        try:  # earlier runs that await their import jobs: finalised when due
            lifecycle.recheck(name, services, by=f"run {run_id}")
        except ExportError as exc:  # an unreadable earlier report must not stop this run
            log.warning("export '%s': earlier import jobs not re-checked: %s", name, exc.message)
        return _run(name, raw_definition, services, trigger, options, lease, run_id, continues)
    finally:
        lease.release()


def queued_report(name: str, trigger: str, options: RunOptions = RunOptions()) -> RunReport:
    """The report of a run that is waiting in the queue (a new run id; store it to show it)."""
    return RunReport(export=name, trigger=trigger, dry_run=options.dry_run, full_refresh=options.full_refresh, status="queued")


def _run(
    name: str,
    raw_definition: dict[str, Any],
    services: Services,
    trigger: str,
    options: RunOptions,
    lease: RunLease | None,
    run_id: str,
    continues: bool,
) -> RunReport:
    report = RunReport(export=name, trigger=trigger, dry_run=options.dry_run, full_refresh=options.full_refresh, run_id=run_id)
    log.info(
        "export '%s': run %s started (trigger=%s, dry_run=%s, full_refresh=%s)",
        name,
        report.run_id,
        trigger,
        options.dry_run,
        options.full_refresh,
    )
    writes, interrupted, saved = not options.dry_run, False, True
    with tempfile.TemporaryDirectory(prefix="sg-export-", dir=services.workdir) as tmp:
        ctx: RunContext | None = None
        try:
            definition = parse_definition(raw_definition)
            report.sync_mode, report.definition = definition.sync_mode, definition.fingerprint()
            if not (writes and not options.full_refresh and _nothing_to_do(services, report, definition)):
                workspace = Workspace(Path(tmp))
                ctx = RunContext(
                    definition,
                    services,
                    report,
                    options,
                    workspace,
                    RejectsLog(workspace.rejects, report),
                    lease,
                    services.clock(),
                )
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
            log.error("export '%s': unexpected %s at %s:%s", name, type(exc).__name__, Path(where.filename).name, where.lineno)
            report.error = ExportError("internal_error", f"unexpected {type(exc).__name__}; see the function log")
        except BaseException:  # the invocation itself is going (a crash, a stop): not the run's end
            interrupted = True
            raise
        finally:
            if ctx is not None:
                ctx.close()
                report.counts.valid -= ctx.progress.refused  # refused by SendGrid: rejects, not valid
                if ctx.rejects.lines and writes:
                    report.rejects_blob = _save_rejects(services.state, report, ctx.workspace.rejects)
            if interrupted and continues:  # the queue delivers the message again: the run goes on then
                report.status = "running"
            else:
                if interrupted:
                    report.error = ExportError("internal_error", "the run was interrupted; the next run resumes it")
                _conclude(report, services, continues)
            saved = not writes
            if writes:
                try:
                    services.state.save_report(report.to_dict())
                    saved = True
                except ExportError as exc:
                    log.error("export '%s': could not store the run report: %s", name, exc.message)
            if not interrupted and (saved or not continues):
                lifecycle.announce(report)  # once final and stored: the ExportRun event (metrics too, when configured)
    if writes and not saved and continues:  # the queue tries again: the run goes on from its checkpoint
        raise ExportError("storage_unavailable", f"the report of run {report.run_id} was not stored; the message is retried")
    _log_summary(report)
    return report


def _conclude(report: RunReport, services: Services, continues: bool) -> None:
    """The status this invocation leaves (lifecycle.conclude)."""
    try:
        lifecycle.conclude(report, services, continues=continues)
    except ExportError as exc:  # the confirming mark not written: the run is final now
        log.error("export '%s': could not note the run as confirming: %s", report.export, exc.message)
        report.awaiting = None
        report.finish(None, continues=continues)


def _nothing_to_do(services: Services, report: RunReport, definition: ExportDefinition) -> bool:
    """Whether the snapshot and definition are those of the last succeeded run (see
    run/unchanged.py); the report then says so and the run ends without a SendGrid request."""
    with stage(report, "prepare"):
        previous = unchanged.last_finished(services.state, report.export, report.run_id)
        if previous is None or previous.get("status") != "succeeded":
            return False  # nothing to compare with: the segment is opened once, by prepare, not twice
        segment = services.source.open_segment(definition.source_folder, definition.segment)
        if not unchanged.same_as_before(report, segment, previous):
            return False
        report.source = segment.describe()
        unchanged.finish_unchanged(report, previous)
        return True


def confirm_run(name: str, run_id: str, services: Services) -> dict[str, Any] | None:
    """A confirm message: re-check run `run_id`'s pending import jobs once (lifecycle.recheck_run,
    which finalises the run when due), then settle the delivered record for jobs now final, under
    a short lease (a run holding the export settles it itself). Returns the run's report."""
    report = lifecycle.recheck_run(services, name, run_id, by="confirm message")
    latest = services.state.latest_report(name)
    if latest is not None and latest.get("status") in UNFINISHED:
        return report  # a run is queued or going on (perhaps between two invocations): it settles the record
    try:
        lease = services.state.acquire_run_lease(name, services.lease_seconds)
    except ExportError:
        return report
    client: list[SendGridClient] = []
    try:
        with tempfile.TemporaryDirectory(prefix="sg-settle-", dir=services.workdir) as tmp:
            path = Path(tmp) / "record.tsv"
            info = services.state.record.download(name, str(path))
            settled = {"applied": 0, "not_applied": 0, "pending": 0}

            def sendgrid() -> SendGridClient:
                if not client:
                    client.append(services.client_for_export(name))
                return client[0]

            if settle_record_file(sendgrid, path, settled):
                services.state.record.save(
                    name, str(path), info.etag, info.list_ids or (), list(info.fields) if info.fields is not None else None
                )
                log.info("export '%s': earlier import jobs settled: %s", name, settled)
    finally:
        for made in client:
            made.close()
        lease.release()
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
        report.export,
        report.run_id,
        report.status,
        c.read,
        c.valid,
        c.rejected,
        c.duplicates,
        c.unchanged,
        c.sent,
        c.failed,
        c.removed,
        report.upserts,
        report.retries,
        f" error={report.error.code}" if report.error else "",
    )
