"""The run engine: decides *when* work happens, on the run queue (shared/state/queue.py); the run
(shared/run/exporter.py) decides *what* happens.

  submit      HTTP POST and the timer: store a `queued` report, put a `run` message
  handle      the queue worker: one message = one unit of work for one export
    run       run the export without sleeping for its import jobs; a run that reaches its time
              limit (checkpointed, `resumable`) puts a `continue` message, one with jobs still
              pending puts a `confirm` message, visible after CONFIRM_INTERVAL_SECONDS
    continue  the same run goes on from its checkpoint (same run id: one report for the run)
    confirm   poll the run's pending jobs once and settle the record (exporter.confirm_jobs);
              again after twice the interval (at most 15 min) until every job is final or
              JOB_WAIT_SECONDS passed since the run's last send
    event     an Event Grid BlobCreated for a metadata blob: a `run` (trigger `event`) of every
              enabled definition whose source_folder holds it, after SNAPSHOT_SETTLE_SECONDS

A handler is idempotent: a retried message resumes (the run goes on from its checkpoint), a
duplicate of a finished run is dropped. An ExportError ends a run with a stored report and does
not raise; an unexpected error (`internal_error`) raises, so the host retries the message, and
after maxDequeueCount tries moves it to `<queue>-poison` (the run's report then says failed).

Staleness (liveness.py): a `queued`/`running` report answers 409 to a new POST only while
it can still be going on: its run holds the export's lease, or it was written less than
`stale_after` ago (the host's 10-minute message visibility plus every retry and the settle delay).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from shared.definitions import parse_definition
from shared.engine import liveness
from shared.engine.messages import BadMessage, BlobCreated, Work, parse
from shared.errors import ExportError
from shared.report import FINISHED, RunReport
from shared.run.context import RunOptions
from shared.run.exporter import confirm_jobs, queued_report, run_export
from shared.sendgrid import jobs
from shared.services import App, JobPolling

log = logging.getLogger(__name__)

MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount (a test checks they agree)
MAX_CONFIRM_INTERVAL = 15 * 60
BUSY_RETRY_SECONDS = 60  # a run message that finds the export's lease held is put back this late
MAX_BUSY_TRIES = 30
INLINE_JOB_WAIT = 120.0  # {"wait": true}: at most this long for import jobs (HTTP answers within 230 s)


def submit(
    app: App, name: str, raw: dict[str, Any], options: dict[str, bool], *, trigger: str, delay: float = 0, validate: bool = True
) -> RunReport:
    """Queue a run of one export and store its `queued` report. Raises ExportError: a definition
    that cannot run (when `validate`), `run_in_progress` while a run of it is queued or running
    (liveness.Busy, naming that run), or a queue that cannot be written."""
    if validate:
        parse_definition(raw)  # invalid, no consent: 4xx at once
    queue = app.services.queue
    if queue is None:
        raise ExportError("internal_error", "no run queue is configured (RUN_QUEUE's storage account)")
    liveness.refuse_if_active(app, name)
    report = queued_report(name, trigger, RunOptions(**options))
    app.services.state.save_report(liveness.stamp(report.to_dict()))
    try:
        queue.send(Work("run", name, report.run_id, trigger, options).to_message(), delay)
    except ExportError as exc:
        report.error = exc
        report.finish()
        app.services.state.save_report(report.to_dict())
        raise
    log.info("export '%s': run %s queued (trigger=%s)", name, report.run_id, trigger)
    return report


def run_inline(app: App, name: str, raw: dict[str, Any], options: dict[str, bool], *, trigger: str) -> RunReport:
    """Run now, in this invocation ({"wait": true}, dry runs, the CLI); import jobs are waited for
    at most INLINE_JOB_WAIT seconds, then left to the status endpoint and the next run."""
    polling = app.services.job_polling
    services = dataclasses.replace(
        app.services, job_polling=dataclasses.replace(polling, max_wait=min(polling.max_wait, INLINE_JOB_WAIT))
    )
    return run_export(name, raw, services, trigger=trigger, options=RunOptions(**options))


def enqueue_all(app: App, *, trigger: str = "timer") -> list[dict[str, Any]]:
    """The timer: one `run` message per enabled export; a summary line per export."""
    summaries: list[dict[str, Any]] = []
    for name, raw in app.settings.definitions.items():
        if raw.get("enabled", True) is False:
            summaries.append({"export": name, "status": "skipped"})
            continue
        try:
            report = submit(app, name, raw, {}, trigger=trigger, validate=False)
        except ExportError as exc:  # run_in_progress (queued or running already), or the queue failed
            log.info("export '%s': not queued, %s", name, exc.message)
            summaries.append({"export": name, "status": "skipped", "error": exc.code})
            continue
        summaries.append({"export": name, "status": "queued", "run_id": report.run_id})
    log.info("scheduled run: %d of %d export(s) queued", sum(s["status"] == "queued" for s in summaries), len(summaries))
    return summaries


def handle(app: App, body: bytes, dequeue_count: int = 1) -> None:
    """One queue message. Raises only for an unexpected error (the host retries the message)."""
    try:
        items = parse(body)
    except BadMessage as exc:  # retrying cannot help: logged (never the body) and dropped
        log.error("run queue: message dropped: %s", exc)
        return
    for item in items:
        try:
            if isinstance(item, BlobCreated):
                _on_event(app, item)
            elif item.kind == "confirm":
                _on_confirm(app, item)
            else:
                _on_run(app, item, dequeue_count)
        except Exception:
            if dequeue_count >= MAX_DEQUEUE_COUNT and isinstance(item, Work) and item.kind != "confirm":
                # The host moves the message to <queue>-poison now: the run's report says so.
                stored = liveness.report_of(app.services.state, item.export, item.run_id)
                liveness.fail(
                    app,
                    item,
                    stored,
                    ExportError(
                        "internal_error",
                        f"the run failed unexpectedly {dequeue_count} times; its message went to the "
                        "poison queue; see the function log",
                    ),
                )
            raise


def _on_run(app: App, work: Work, dequeue_count: int) -> None:
    name = work.export
    raw = app.settings.definitions.get(name)
    stored = liveness.report_of(app.services.state, name, work.run_id)
    if raw is None:
        liveness.fail(app, work, stored, ExportError("not_found", f"no export named '{name}' any more"))
        return
    if dequeue_count <= 1 and stored is not None and _finished(stored) and work.kind == "run":
        log.info("export '%s': run %s already finished; duplicate message dropped", name, work.run_id)
        return
    base = stored or queued_report(name, work.trigger, RunOptions(**work.options)).to_dict()
    liveness.save(app, {**base, "run_id": work.run_id, "status": "running"})
    services = dataclasses.replace(app.services, job_polling=JobPolling(max_wait=0))  # confirm by message
    try:
        report = run_export(name, raw, services, trigger=work.trigger, options=RunOptions(**work.options), run_id=work.run_id)
    except ExportError as exc:  # run_in_progress: another run (or a confirm) holds the export
        _busy(app, work, base, exc)
        return
    if report.resumable:  # its time limit (or lease) ended it, checkpointed: the same run goes on
        liveness.save(app, {**report.to_dict(), "status": "running"})
        _send(app, Work("continue", name, work.run_id, work.trigger, work.options))
        return
    if report.error is not None and report.error.code == "internal_error":
        # Unexpected: raise so the queue retries (from the checkpoint); its report says failed.
        raise RuntimeError(f"export '{name}': run {work.run_id} ended in an unexpected error (try {dequeue_count})")
    if any(jobs.is_pending(job) for job in report.jobs):
        interval = float(app.settings.confirm_interval_seconds)
        _send(app, Work("confirm", name, work.run_id, work.trigger, since=time.time(), interval=interval), interval)


def _finished(report: dict[str, Any]) -> bool:
    return report.get("status") in FINISHED and not report.get("resumable") and not report.get("abandoned")


def _busy(app: App, work: Work, base: dict[str, Any], exc: ExportError) -> None:
    if work.tries >= MAX_BUSY_TRIES:
        liveness.fail(app, work, base, exc)
        return
    liveness.save(app, {**base, "status": "queued"})
    log.info("export '%s': run %s finds the export busy; put back for %ds", work.export, work.run_id, BUSY_RETRY_SECONDS)
    _send(app, dataclasses.replace(work, tries=work.tries + 1), BUSY_RETRY_SECONDS)


def _on_confirm(app: App, work: Work) -> None:
    latest = confirm_jobs(work.export, app.services)
    if latest is None or latest.get("run_id") != work.run_id:
        log.info("export '%s': a newer run than %s took over; it confirms its own jobs", work.export, work.run_id)
        return
    pending = sum(1 for job in latest.get("jobs", []) if isinstance(job, dict) and jobs.is_pending(job))
    if not pending:
        log.info("export '%s': every import job of run %s is final (%s)", work.export, work.run_id, latest.get("status"))
        return
    if time.time() - work.since >= app.settings.job_wait_seconds:
        log.warning(
            "export '%s': %d import job(s) of run %s still pending after JOB_WAIT_SECONDS; the next run settles them",
            work.export,
            pending,
            work.run_id,
        )
        return
    interval = min(max(work.interval * 2, float(app.settings.confirm_interval_seconds)), MAX_CONFIRM_INTERVAL)
    _send(app, dataclasses.replace(work, interval=interval), interval)


def _on_event(app: App, event: BlobCreated) -> None:
    if event.container != app.settings.source_container:
        log.info("event for container '%s' ignored (SOURCE_CONTAINER is another)", event.container[:63])
        return
    matched = 0
    for name, raw in app.settings.definitions.items():
        if raw.get("enabled", True) is False:
            continue
        try:
            folder = parse_definition(raw).source_folder
        except ExportError:
            continue  # an invalid definition runs on the timer, which records why it fails
        if folder != event.folder:
            continue
        matched += 1
        try:
            submit(app, name, raw, {}, trigger="event", delay=app.settings.snapshot_settle_seconds, validate=False)
        except ExportError as exc:  # a run is queued or going on: it (or the next) reads the new snapshot
            log.info("export '%s': new snapshot, run not queued: %s", name, exc.message)
    log.info("new metadata blob in '%s': %d export(s) queued", event.folder[:200], matched)


def _send(app: App, work: Work, delay: float = 0) -> None:
    queue = app.services.queue
    if queue is None:
        raise ExportError("internal_error", "no run queue is configured")
    queue.send(work.to_message(), delay)
