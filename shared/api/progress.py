"""The progress of a run in this process, drawn on one terminal line: rows read (from the run's
log), requests sent and import jobs pending (from SendGrid's answers). Counts only."""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import urlsplit

import requests

from shared.api.terminal import clean, count
from shared.sendgrid.client import SendGridClient
from shared.services import Account, App

FINAL_JOB_STATUSES = ("completed", "errored", "failed")
TICK_SECONDS = 0.2

_READ = re.compile(r"read (\d+) rows, (\d+) valid")
_ACCEPTED = re.compile(r"request (\d+) accepted; (\d+) contacts sent")


class Progress(logging.Handler):
    """What a run in this process has done so far, drawn on one terminal line: rows read (from the
    run's log), requests sent and import jobs pending (from SendGrid's answers to this process).
    Counts only: no value of a profile is ever read here."""

    def __init__(self, out: TextIO, name: str) -> None:
        super().__init__(logging.INFO)
        self.out, self.name = out, name
        self.rows = self.valid = self.requests = self.sent = 0
        self.jobs: set[str] = set()
        self.ended: set[str] = set()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    # The run's log: counts only (the regular expressions take digits).
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record that does not format is not progress
            return
        with self._lock:
            if found := _READ.search(message):
                self.rows, self.valid = int(found[1]), int(found[2])
            elif found := _ACCEPTED.search(message):
                self.requests, self.sent = int(found[1]), int(found[2])

    # SendGrid's answers: a job id when contacts are accepted, a job's status when it is asked.
    def on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = urlsplit(request.url or "").path
        try:
            if request.method == "PUT" and path.endswith("/marketing/contacts") and response.status_code == 202:
                job = response.json().get("job_id")
                if job:
                    with self._lock:
                        self.jobs.add(str(job))
            elif request.method == "GET" and "/marketing/contacts/imports/" in path and response.status_code == 200:
                if response.json().get("status") in FINAL_JOB_STATUSES:
                    with self._lock:
                        self.ended.add(path.rsplit("/", 1)[-1])
        except (ValueError, AttributeError):  # not the JSON expected: not counted
            return

    def line(self) -> str:
        with self._lock:
            parts = [f"{self.rows:,} rows read"] if self.rows else [] if self.requests else ["reading"]
            if self.requests:
                parts.append(f"{count(self.requests, 'request')} sent ({self.sent:,} contacts)")
            pending = len(self.jobs - self.ended)
            if pending:
                parts.append(f"{count(pending, 'import job')} pending")
        spinner = "|/-\\"[int((time.monotonic() - self.started) / TICK_SECONDS) % 4]
        return f"{spinner} {clean(self.name)}: {', '.join(parts)}, {time.monotonic() - self.started:.1f} s"

    def draw(self) -> None:
        self.out.write("\r\x1b[K" + self.line())
        self.out.flush()

    def run(self) -> None:
        """The ticker thread: redraw until `stopped` is set."""
        while not self.stopped.wait(TICK_SECONDS):
            self.draw()

    def finish(self) -> None:
        """After the ticker stopped: the last counts, then the line cleared for the summary."""
        self.draw()
        self.out.write("\r\x1b[K")
        self.out.flush()


def observed(app: App, progress: Progress) -> App:
    """The app with SendGrid clients whose answers `progress` sees (their status and job ids)."""
    services = app.services

    def hooked(client: SendGridClient) -> SendGridClient:
        session = getattr(client, "_session", None)
        if isinstance(session, requests.Session):
            session.hooks["response"].append(progress.on_response)
        return client

    default, for_account = services.sendgrid, services.sendgrid_for

    def sendgrid_for(account: Account) -> SendGridClient:
        assert for_account is not None
        return hooked(for_account(account))

    replaced = dataclasses.replace(
        services, sendgrid=lambda: hooked(default()), sendgrid_for=sendgrid_for if for_account is not None else None
    )
    return App(app.settings, replaced)


@contextmanager
def showing_progress(app: App, name: str, out: TextIO) -> Iterator[App]:
    """While the block runs, its run's progress on `out` (a terminal), redrawn a few times a
    second; yields the app to run it with."""
    progress = Progress(out, name)
    logger = logging.getLogger("shared")
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(progress)
    ticker = threading.Thread(target=progress.run, name="cli-progress", daemon=True)
    ticker.start()
    try:
        yield observed(app, progress)
    finally:
        progress.stopped.set()
        ticker.join()
        progress.finish()
        logger.removeHandler(progress)
        logger.setLevel(level)
