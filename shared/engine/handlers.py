"""The run engine: decides *when* work happens, on the run queue (shared/state/queue.py); the run
(shared/run/exporter.py) decides *what* happens.

  submit      HTTP POST and the timer: store a `queued` report, put a `run` message
  handle      the queue worker: one message = one unit of work for one export
    run       claim the run (its report goes `queued` -> `running` by a conditional write) and run
              the export without sleeping for its import jobs; a run that reaches its time limit
              (checkpointed, `resumable`) stays `running` and puts a `continue` message; one whose
              jobs are pending is `confirming` and puts a `confirm` message, visible after
              CONFIRM_INTERVAL_SECONDS
    continue  the same run goes on from its checkpoint (same run id: one report for the run)
    confirm   re-check that run's pending jobs once (lifecycle.recheck_run: final when they are, or
              when JOB_WAIT_SECONDS passed since its last send) and settle the record
              (exporter.confirm_run); again after twice the interval (at most 15 min) until final
    event     an Event Grid BlobCreated for a metadata blob: a `run` (trigger `event`) of every
              enabled definition whose source_folder holds it, after SNAPSHOT_SETTLE_SECONDS; for
              an export with a run queued or running, one follow-up run (coalesced) that is
              queued when that run ends

Every handler is idempotent at any dequeue count: a `run`, `continue` or `confirm` for a run
that is already final (or, for `run` and `continue`, confirming) changes nothing; a retried
message resumes (the run goes on from its checkpoint). An ExportError ends a run with a stored
report and does not raise; an unexpected error (`internal_error`) raises, so the host retries the
message (the run's report stays `running`), and after maxDequeueCount tries moves it to
`<queue>-poison` (the run's report then says failed).

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
from shared.report import CONFIRMING, UNFINISHED, RunReport, is_done
from shared.run.context import RunOptions
from shared.run.exporter import confirm_run, queued_report, run_export
from shared.services import App

log = logging.getLogger(__name__)

MAX_DEQUEUE_COUNT = 5  # host.json extensions.queues.maxDequeueCount (a test checks they agree)
MAX_CONFIRM_INTERVAL = 15 * 60
BUSY_RETRY_SECONDS = 60  # a run message that finds the export's lease held is put back this late
MAX_BUSY_TRIES = 30
INLINE_JOB_WAIT = 120.0  # {"wait": true}: at most this long for import jobs (HTTP answers within 230 s)
QUEUE_ATTEMPTS = 3  # conditional writes of a queued report before a submit gives up


def submit(
    app: App, name: str, raw: dict[str, Any], options: dict[str, bool], *, trigger: str, delay: float = 0, validate: bool = True
) -> RunReport:
    """Queue a run of one export and store its `queued` report. Raises ExportError: a definition
    that cannot run (when `validate`), `run_in_progress` while a run of it is queued or running
    (liveness.Busy, naming that run), or a queue that cannot be written. At most one run of an
    export is queued, whatever races: the queued report replaces `latest.json` only if it is still
    the one read (a conditional write), else it is read again."""
    if validate:
        parse_definition(raw)  # invalid, no consent: 4xx at once
    queue = app.services.queue
    if queue is None:
        raise ExportError("internal_error", "no run queue is configured (RUN_QUEUE's storage account)")
    report = queued_report(name, trigger, RunOptions(**options))
    for _ in range(QUEUE_ATTEMPTS):
        etag = liveness.refuse_if_active(app, name)
        if app.services.state.queue_report(report.to_dict(), etag):
            break
    else:
        liveness.refuse_if_active(app, name)  # another submit won each time: name its run
        raise ExportError("run_in_progress", f"export '{name}' is being queued by another request; try again")
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
    report = run_export(name, raw, services, trigger=trigger, options=RunOptions(**options))
    if not options.get("dry_run"):
        _follow_up(app, name)
    return report


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
    name, state = work.export, app.services.state
    raw = app.settings.definitions.get(name)
    found = state.report_and_etag(name, work.run_id)
    stored, etag = found if found is not None else (None, None)
    if stored is not None and is_done(stored):
        log.info("export '%s': run %s is %s; %s message dropped", name, work.run_id, stored.get("status"), work.kind)
        return
    if raw is None:
        liveness.fail(app, work, stored, ExportError("not_found", f"no export named '{name}' any more"))
        return
    base = stored or queued_report(name, work.trigger, RunOptions(**work.options)).to_dict()
    running = liveness.stamp({**base, "run_id": work.run_id, "status": "running"})
    if etag is None:
        state.save_report(running)
    elif not state.save_report_if(running, etag):  # another delivery of this message claimed it first
        again = state.report(name, work.run_id)
        if again is not None and is_done(again):
            log.info("export '%s': run %s ended meanwhile; %s message dropped", name, work.run_id, work.kind)
        else:
            _busy(app, work)
        return
    polling = dataclasses.replace(app.services.job_polling, max_wait=0)  # confirm by message
    services = dataclasses.replace(app.services, job_polling=polling)
    try:
        report = run_export(
            name,
            raw,
            services,
            trigger=work.trigger,
            options=RunOptions(**work.options),
            run_id=work.run_id,
            continues=dequeue_count < MAX_DEQUEUE_COUNT,
        )
    except ExportError as exc:  # run_in_progress: another run (or a confirm) holds the export
        _busy(app, work, exc)
        return
    if report.resumable and report.status == "running":  # its time limit (or lease) ended it: it goes on
        _send(app, Work("continue", name, work.run_id, work.trigger, work.options))
        return
    if report.error is not None and report.error.code == "internal_error":
        # Unexpected: raise so the queue retries (from the checkpoint); its report says running
        # until the last try, which leaves it failed.
        raise RuntimeError(f"export '{name}': run {work.run_id} ended in an unexpected error (try {dequeue_count})")
    if report.status == CONFIRMING:
        interval = float(app.settings.confirm_interval_seconds)
        try:
            _send(app, Work("confirm", name, work.run_id, work.trigger, since=time.time(), interval=interval), interval)
        except ExportError as exc:  # status reads and the next run re-check confirming runs all the same
            log.warning("export '%s': run %s confirm message not sent: %s", name, work.run_id, exc.message)
    _follow_up(app, name)


def _busy(app: App, work: Work, exc: ExportError | None = None) -> None:
    """The export is busy (another run, a confirm, or another delivery of this message holds
    it): put the message back for later, changing no report (the holder writes it)."""
    if work.tries >= MAX_BUSY_TRIES:
        stored = liveness.report_of(app.services.state, work.export, work.run_id)
        liveness.fail(app, work, stored, exc or ExportError("run_in_progress", f"export '{work.export}' stayed busy"))
        return
    log.info("export '%s': run %s finds the export busy; put back for %ds", work.export, work.run_id, BUSY_RETRY_SECONDS)
    _send(app, dataclasses.replace(work, tries=work.tries + 1), BUSY_RETRY_SECONDS)


def _on_confirm(app: App, work: Work) -> None:
    report = confirm_run(work.export, work.run_id, app.services)
    if report is None or report.get("status") != CONFIRMING:
        status = report.get("status") if report is not None else "gone"
        log.info("export '%s': run %s is %s; no more confirm messages", work.export, work.run_id, status)
        return
    interval = min(max(work.interval * 2, float(app.settings.confirm_interval_seconds)), MAX_CONFIRM_INTERVAL)
    _send(app, dataclasses.replace(work, interval=interval), interval)


def _follow_up(app: App, name: str) -> None:
    """Queue the follow-up run an event asked for while this export was busy, if it did. A run
    that cannot be queued now (another is queued or running) leaves the request for that one."""
    state = app.services.state
    try:
        if not state.has_followup(name):
            return
        raw = app.settings.definitions.get(name)
        if raw is not None and raw.get("enabled", True) is not False:
            # Queued before the request is taken: a kill in between costs a second (unchanged) run, never the run.
            submit(app, name, raw, {}, trigger="event", delay=app.settings.snapshot_settle_seconds, validate=False)
            log.info("export '%s': the follow-up run for a new snapshot is queued", name)
        state.take_followup(name)
    except ExportError as exc:  # a run is queued or going on now: the request stays for its end
        log.info("export '%s': follow-up run not queued now (%s); kept for the run that is", name, exc.message)


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
        except ExportError as exc:  # a run is queued or going on: one follow-up run after it
            if app.services.state.request_followup(name, "event"):
                log.info("export '%s': new snapshot while a run is on (%s); a follow-up run is asked for", name, exc.message)
            _follow_up_if_idle(app, name)
    log.info("new metadata blob in '%s': %d export(s) queued", event.folder[:200], matched)


def _follow_up_if_idle(app: App, name: str) -> None:
    """The run that was busy may have ended before the request was written (it looks after it
    ends): if the export is idle now, queue the follow-up here."""
    try:
        latest = app.services.state.latest_report(name)
    except ExportError:
        return
    if latest is None or latest.get("status") not in UNFINISHED:
        _follow_up(app, name)


def _send(app: App, work: Work, delay: float = 0) -> None:
    queue = app.services.queue
    if queue is None:
        raise ExportError("internal_error", "no run queue is configured")
    queue.send(work.to_message(), delay)
