"""The one orchestration: plan (read, validate, count, spill), then apply (send in chunks).

Shaped like a sink: `plan` processes records one by one into a compact local spill of encoded
contacts; `apply` streams the spill into capped request bodies. Neither pass holds the segment
in memory: the spill is a file, and de-duplication keeps 8 bytes per profile.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import chunking
from shared.definitions import ExportDefinition, parse_definition
from shared.errors import ExportError
from shared.mapping import ContactMapper, Deduplicator, Rejected, resolve_custom_fields
from shared.report import RunReport
from shared.sendgrid import SendGridClient, SendGridRejected
from shared.source import BlobSource, Segment
from shared.state import StateStore

log = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 50_000
REJECTS_HEADER = ["partition", "row", "reason", "detail"]


@dataclass
class Services:
    source: BlobSource
    state: StateStore
    sendgrid: Callable[[], SendGridClient]  # made on demand: a dry run of a bad definition needs none
    workdir: str | None = None
    max_contacts_per_request: int = chunking.MAX_CONTACTS_PER_REQUEST
    max_body_bytes: int = chunking.MAX_BODY_BYTES


RowRef = tuple[str, int]  # (partition name, row number): how a rejects line points at a row


class _Run:
    """One run's working state; `run_export` below is the public entry."""

    def __init__(self, definition: ExportDefinition, services: Services, report: RunReport, tmp: Path) -> None:
        self.definition = definition
        self.services = services
        self.report = report
        self.spill_path = tmp / "contacts.spill"
        self.rejects_file = open(tmp / "rejects.csv", "w+", newline="", encoding="utf-8", errors="surrogateescape")
        self.rejects_writer = csv.writer(self.rejects_file)
        self.rejects_writer.writerow(REJECTS_HEADER)
        self.rejects_lines = 0
        self.client: SendGridClient | None = None

    def sendgrid(self) -> SendGridClient:
        if self.client is None:
            self.client = self.services.sendgrid()
        return self.client

    def write_reject(self, ref: RowRef, reason: str, detail: str) -> None:
        self.rejects_writer.writerow([ref[0], ref[1], reason, detail])
        self.rejects_lines += 1

    # -- plan ----------------------------------------------------------------------------------
    def prepare(self) -> tuple[Segment, ContactMapper]:
        definition = self.definition
        segment = self.services.source.open_segment(definition.source_folder, definition.segment)
        self.report.source = segment.describe()
        custom = {}
        if definition.custom_fields:
            custom = resolve_custom_fields(definition.custom_fields, self.sendgrid().custom_fields())
        mapper = ContactMapper(definition, segment.columns, custom)
        missing = [i for i in definition.list_ids if not self.sendgrid().list_exists(i)]
        if missing:
            raise ExportError("unknown_list", f"SendGrid list(s) {', '.join(missing)} do not exist in the account")
        return segment, mapper

    def plan(self, segment: Segment, mapper: ContactMapper) -> None:
        report, counts = self.report, self.report.counts
        dedup = Deduplicator()
        max_contact = chunking.max_contact_bytes(self.definition.list_ids, self.services.max_body_bytes)
        limit = self.definition.max_profiles
        with open(self.spill_path, "wb") as spill:
            for row in self.services.source.rows(segment):
                counts.read += 1
                ref = (row.partition, row.number)
                result = mapper.map(row.values)
                if isinstance(result, Rejected):
                    report.reject(result.reason)
                    self.write_reject(ref, result.reason, result.detail)
                elif not dedup.first_time(result["email"]):
                    counts.duplicates += 1
                    self.write_reject(ref, "duplicate email", "an earlier row has the same email")
                else:
                    encoded = chunking.encode_contact(result)
                    if len(encoded) > max_contact:
                        report.reject("contact too large")
                        self.write_reject(ref, "contact too large", f"{len(encoded)} bytes encoded")
                        continue
                    counts.valid += 1
                    if counts.valid > limit:
                        raise ExportError(
                            "too_many_profiles",
                            f"the segment has more than max_profiles ({limit}) valid profiles; "
                            "nothing was sent. Raise max_profiles or narrow the segment",
                        )
                    spill.write(f"{row.partition}\t{row.number}\t".encode("utf-8", "surrogateescape") + encoded + b"\n")
                if counts.read % PROGRESS_EVERY_ROWS == 0:
                    log.info("export '%s': read %d rows, %d valid so far", self.definition.name, counts.read, counts.valid)

    # -- apply ---------------------------------------------------------------------------------
    def spilled(self) -> Iterator[tuple[tuple[RowRef, bytes], bytes]]:
        with open(self.spill_path, "rb") as spill:
            for line in spill:
                partition, number, encoded = line.rstrip(b"\n").split(b"\t", 2)
                ref = (partition.decode("utf-8", "surrogateescape"), int(number))
                yield (ref, encoded), encoded

    def apply(self) -> None:
        list_ids = self.definition.list_ids
        chunks = chunking.pack(
            self.spilled(), list_ids, self.services.max_contacts_per_request, self.services.max_body_bytes
        )
        for index, chunk in enumerate(chunks, start=1):
            self.deliver(chunk.refs, chunk.body)
            log.info(
                "export '%s': request %d accepted; %d of %d contacts sent",
                self.definition.name, index, self.report.counts.sent, self.report.counts.valid,
            )

    def deliver(self, items: list[tuple[RowRef, bytes]], body: bytes | None = None) -> None:
        """Send one body. A 400 fails the whole request for one bad contact, so the body is
        split in halves until the contacts SendGrid refuses are alone; the rest are delivered."""
        client = self.sendgrid()
        if body is None:
            body = chunking.build_body(self.definition.list_ids, (encoded for _, encoded in items))
        self.report.upserts += 1
        try:
            job_id = client.upsert_contacts(body)
        except SendGridRejected as rejected:
            fields = {str(e.get("field")) for e in rejected.errors if e.get("field")}
            if fields and not any(f.startswith("contacts[") for f in fields):
                # A request-level refusal (list_ids, the body): halving cannot isolate anything.
                raise ExportError("sendgrid_error", f"SendGrid refused the request (fields: {', '.join(sorted(fields))})")
            if len(items) == 1:
                ref = items[0][0]
                reason = "rejected by SendGrid" + (f" ({', '.join(sorted(fields))})" if fields else "")
                # Counted as rejected, no longer valid: counts.read stays the sum of the parts.
                self.report.counts.valid -= 1
                self.report.reject("rejected by SendGrid")
                self.write_reject(ref, reason, "; ".join(str(e.get("message", "")) for e in rejected.errors))
                return
            middle = len(items) // 2
            del body
            self.deliver(items[:middle])
            self.deliver(items[middle:])
            return
        self.report.counts.sent += len(items)
        self.report.jobs.append({"job_id": job_id, "contacts": len(items)})

    def close(self) -> None:
        if self.client is not None:
            self.report.retries = self.client.retries
            self.client.close()
        self.rejects_file.close()


def run_export(
    name: str,
    raw_definition: dict[str, Any],
    services: Services,
    *,
    trigger: str,
    dry_run: bool = False,
) -> RunReport:
    """Run one export and return its report (also stored in the state container).

    Never raises for a failed run: the report's `error` says what went wrong, and its code
    maps to an HTTP status in the API.
    """
    report = RunReport(export=name, trigger=trigger, dry_run=dry_run)
    log.info("export '%s': run %s started (trigger=%s, dry_run=%s)", name, report.run_id, trigger, dry_run)
    with tempfile.TemporaryDirectory(prefix="sg-export-", dir=services.workdir) as tmp:
        run: _Run | None = None
        try:
            definition = parse_definition(raw_definition)
            run = _Run(definition, services, report, Path(tmp))
            segment, mapper = run.prepare()
            run.plan(segment, mapper)
            if not dry_run:
                run.apply()
        except ExportError as exc:
            report.error = exc
        except Exception as exc:  # a bug: keep the type and where, not the message (it may quote data)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("export '%s': unexpected %s at %s:%s", name, type(exc).__name__, Path(where.filename).name, where.lineno)
            report.error = ExportError("internal_error", f"unexpected {type(exc).__name__}; see the function log")
        finally:
            if run is not None:
                run.close()
                if run.rejects_lines:
                    report.rejects_blob = _save_rejects(services.state, report, Path(run.rejects_file.name))
            report.finish()
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
        "export '%s': run %s %s; read=%d valid=%d rejected=%d duplicates=%d sent=%d upserts=%d retries=%d%s",
        report.export, report.run_id, report.status, c.read, c.valid, c.rejected, c.duplicates, c.sent,
        report.upserts, report.retries,
        f" error={report.error.code}" if report.error else "",
    )
