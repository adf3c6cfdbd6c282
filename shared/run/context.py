"""What every stage of one run shares: the definition, the services, the report being filled, the
run's temporary files, the rejects log and the SendGrid client (made on first use).

Stages return what they found (`Prepared`, `ReadResult`, `Plan`); the report is the one thing
they all add to. Which thread may write which part of it is written down in `delivery.py`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shared import telemetry
from shared.definitions import ExportDefinition
from shared.report import RunReport
from shared.run.rejects import RejectsLog
from shared.sendgrid import jobs
from shared.sendgrid.client import SendGridClient
from shared.state.lease import RunLease

if TYPE_CHECKING:
    from shared.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    full_refresh: bool = False  # send every valid contact, changed or not
    confirm_removals: bool = False  # let a mirror run remove more than max_removal_fraction


@dataclass(frozen=True)
class Workspace:
    """The run's temporary files (formats: `shared/delta/lines.py`)."""

    root: Path

    @property
    def spill(self) -> Path:  # spill lines: the contacts to send, in segment order
        return self.root / "contacts.spill"

    @property
    def keys(self) -> Path:  # key lines, one per valid contact, in spill order
        return self.root / "keys.txt"

    @property
    def record(self) -> Path:  # the delivered record as this run found it
        return self.root / "record.tsv"

    @property
    def next_record(self) -> Path:  # the record this run leaves
        return self.root / "record.next.tsv"

    @property
    def decisions(self) -> Path:  # decision lines, one per email of segment or record
        return self.root / "decisions.txt"

    @property
    def leavers(self) -> Path:  # emails to unlink from the lists (mirror mode)
        return self.root / "leavers.txt"

    @property
    def journal(self) -> Path:  # journal lines of an unfinished run, to merge into the record
        return self.root / "journal.tsv"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects.csv"


@dataclass
class Progress:
    """What the sends achieved: the deliveries, and contacts SendGrid refused (this run and the
    run it resumes). Refused contacts count as rejected and leave counts.valid at the end."""

    deliveries: jobs.Deliveries = field(default_factory=jobs.Deliveries)
    refused: int = 0


@dataclass
class RunContext:
    definition: ExportDefinition
    services: Services
    report: RunReport
    options: RunOptions
    workspace: Workspace
    rejects: RejectsLog
    lease: RunLease | None = None
    started: float = 0.0
    progress: Progress = field(default_factory=Progress)
    _client: SendGridClient | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.definition.name

    def sendgrid(self) -> SendGridClient:
        if self._client is None:
            self._client = self.services.client_for(self.definition)  # the definition's own account
        return self._client

    def may_go_on(self) -> bool:
        """False once the run must stop sending: its time limit passed, or its lease was lost
        (another run may hold the export now). It then stops checkpointed, resumable."""
        if self.lease is not None and self.lease.lost.is_set():
            self.report.resumable = True
            log.warning(
                "export '%s': the run lease was lost after %d contacts sent; stopped, checkpointed",
                self.name,
                self.report.counts.sent,
            )
            return False
        if self.services.clock() - self.started > self.services.time_limit:
            self.report.resumable = True
            log.warning(
                "export '%s': time limit reached after %d contacts sent; checkpointed, the next run goes on from here",
                self.name,
                self.report.counts.sent,
            )
            return False
        return True

    def close(self) -> None:
        if self._client is not None:
            self.report.retries += self._client.retries
            self._client.close()
        self.rejects.close()


@contextmanager
def stage(report: RunReport, name: str) -> Iterator[None]:
    """Time a stage of the run into report.timings (shown in the report and the benchmark)."""
    started = time.perf_counter()
    try:
        with telemetry.span(name, report):  # a span carrying run_id, when telemetry is on
            yield
    finally:
        report.timings[name] = report.timings.get(name, 0.0) + time.perf_counter() - started
