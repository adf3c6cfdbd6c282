"""Everything written to the state container: run reports, rejects files, checkpoints and the
delivered record. The only module that writes there (the run lock is `lease.py`'s; the record's
blob code is `record.py`'s `DeliveredRecord`, which the store holds as `store.record`).

Layout (under STATE_CONTAINER):
  runs/<export>/<run_id>.json    every run's report
  runs/<export>/latest.json      a copy of the newest report, read by the status endpoint
  rejects/<export>/<run_id>.csv  rows not sent, with partition, row number and reason
  checkpoints/<export>.json      how far an unfinished run got (snapshot, definition, position)
  delivered/<export>.tsv         what SendGrid applied: "email<TAB>hash" lines sorted by email
  journal/<export>.tsv           key lines of every request sent since the record was stored (journal.py)
  confirming/<export>/<run_id>   a run that awaits its import jobs (run/lifecycle.py)
  followups/<export>.json        one more run asked for by a snapshot event while a run was on
  locks/<export>                 an empty blob whose lease means "a run of this export is going on"

Writes that could race carry a condition: the record is replaced only if it is still the one
the run read (its etag), and the status endpoint updates `latest.json` only if no run wrote it
meanwhile.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.definitions import is_export_name
from shared.errors import ExportError
from shared.report import is_run_id, utc_now
from shared.state.lease import RunLease, acquire_run_lease
from shared.state.record import WHAT, DeliveredRecord
from shared.storage import storage_errors

log = logging.getLogger(__name__)

JSON = ContentSettings(content_type="application/json")
CSV = ContentSettings(content_type="text/csv; charset=utf-8")


class StateStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ready = False
        self.record = DeliveredRecord(container, self.ensure)

    def ensure(self) -> None:
        if self._ready:
            return
        with storage_errors(WHAT):
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass
        self._ready = True

    # -- run reports ---------------------------------------------------------------------------
    def save_report(self, report: dict[str, Any]) -> None:
        self.ensure()
        data = _stamped(report)
        export, run_id = report["export"], report["run_id"]
        self._put(f"{_checked(export, run_id)}.json", data)
        self._put(f"runs/{export}/latest.json", data)

    def latest_report(self, export: str) -> dict[str, Any] | None:
        found = self.latest_report_and_etag(export)
        return found[0] if found else None

    def latest_report_and_etag(self, export: str) -> tuple[dict[str, Any], str] | None:
        """The newest report with its etag, None when the export never ran; a blob that is not a
        report raises ExportError (the caller says so for that export and goes on)."""
        found = self._read_report(f"runs/{export}/latest.json")
        if found is None:
            return None
        report, etag = found
        if report is None or not isinstance(report.get("jobs", []), list):
            raise ExportError("storage_unavailable", f"runs/{export}/latest.json is not a readable run report")
        return report, etag

    def _read_report(self, name: str) -> tuple[dict[str, Any] | None, str] | None:
        """A report blob and its etag (None: no such blob; a report of None: it does not read as one)."""
        with storage_errors(WHAT):
            try:
                downloader = self._container.download_blob(name)
            except ResourceNotFoundError:
                return None
            data, etag = downloader.readall(), str(downloader.properties.etag)
        try:
            report = json.loads(data)
        except (ValueError, RecursionError):
            report = None
        return (report if isinstance(report, dict) else None), etag

    def latest_etag(self, export: str) -> str | None:
        """The etag of `latest.json` (None: the export never ran), however its content reads."""
        with storage_errors(WHAT):
            try:
                return str(self._container.get_blob_client(f"runs/{export}/latest.json").get_blob_properties().etag)
            except ResourceNotFoundError:
                return None

    def list_reports(
        self, export: str, limit: int, before: str | None = None
    ) -> tuple[list[tuple[str, dict[str, Any] | None]], bool]:
        """The export's newest `limit` run reports older than run id `before` (None: the newest),
        newest first, as (run_id, report) with None for a blob that is not a readable report; and
        whether older ones remain. Run ids sort by time, so the order comes from the blob names
        (listed, names only, newest months first: `_newest_run_ids`): only the reports returned
        are downloaded. latest.json is skipped."""
        prefix = f"runs/{export}/"
        run_ids = self._newest_run_ids(prefix, limit + 1, before)
        found: list[tuple[str, dict[str, Any] | None]] = []
        for run_id in run_ids[:limit]:
            with storage_errors(WHAT):
                try:
                    data = self._container.download_blob(f"{prefix}{run_id}.json").readall()
                except ResourceNotFoundError:  # deleted since it was listed
                    continue
            try:
                report = json.loads(data)
            except (ValueError, RecursionError):
                report = None
            found.append((run_id, report if isinstance(report, dict) else None))
        return found, len(run_ids) > limit

    def _newest_run_ids(self, prefix: str, wanted: int, before: str | None) -> list[str]:
        """The newest `wanted` run ids older than `before` (all of them when fewer), newest first.

        Blob names list in ascending order only, and each listed name costs ~0.16 ms of CPU in
        the SDK (measured on Azurite: 1,000 reports, 160 ms a listing), so listing every report to
        find the newest ten made each run slower as history grew. A run id starts with the year and
        month it was made (report.new_run_id), so the newest months are listed first, then whole
        years, down to the month of the oldest report, until `wanted` are found: everything newer
        than what is listed is always listed, so the answer is the full listing's."""
        with storage_errors(WHAT):
            try:
                oldest = next(iter(self._container.list_blobs(name_starts_with=prefix + "2", results_per_page=1)), None)
            except ResourceNotFoundError:  # no state container yet: no runs
                return []
        if oldest is None:
            return []
        floor = oldest.name[len(prefix) : len(prefix) + 6]
        # Another instance's clock may be a little ahead: its run ids may be in the next month.
        top = (before or (datetime.now(UTC) + timedelta(days=1)).strftime("%Y%m"))[:6]
        if not (floor.isdigit() and len(floor) == 6 and top.isdigit() and len(top) == 6):
            return _newest_first(self._run_ids(prefix, ""), before)  # not run ids: list them all
        seen: set[str] = set()
        newest: list[str] = []
        for part in _months_then_years(top, floor):
            seen.update(self._run_ids(prefix, part))
            newest = _newest_first(seen, before)
            if len(newest) >= wanted:
                break
        return newest

    def _run_ids(self, prefix: str, part: str) -> list[str]:
        """The run ids whose report names start with prefix + part (latest.json is not one)."""
        with storage_errors(WHAT):
            try:
                names = [blob.name for blob in self._container.list_blobs(name_starts_with=prefix + part)]
            except ResourceNotFoundError:
                return []
        return [
            n[len(prefix) : -len(".json")]
            for n in names
            if n.endswith(".json") and n != f"{prefix}latest.json" and "/" not in n[len(prefix) :]
        ]

    def report(self, export: str, run_id: str) -> dict[str, Any] | None:
        """One run's stored report (None when there is none, or it is not a readable report)."""
        found = self.report_and_etag(export, run_id)
        return found[0] if found else None

    def _put_if(self, name: str, data: bytes, etag: str | None) -> bool:
        """Upload a JSON blob only if it is still the one read (`etag`; None: only if there is
        none). Whether it was stored (False: another writer came first)."""
        if etag is None:
            condition: dict[str, Any] = {"match_condition": MatchConditions.IfMissing}
        else:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        with storage_errors(WHAT):
            try:
                self._container.upload_blob(name, data, overwrite=True, content_settings=JSON, **condition)
            except (ResourceModifiedError, ResourceExistsError):
                return False
        return True

    def _put(self, name: str, data: bytes) -> None:
        with storage_errors(WHAT):
            self._container.upload_blob(name, data, overwrite=True, content_settings=JSON)

    def update_latest_report(self, report: dict[str, Any], etag: str) -> bool:
        """Store a re-checked report, unless `latest.json` changed since it was read (a run wrote
        it meanwhile: that run's word wins). Whether it was stored."""
        data = _stamped(report)
        export, run_id = report["export"], report["run_id"]
        if not self._put_if(f"runs/{export}/latest.json", data, etag):
            return False
        self._put(f"{_checked(export, run_id)}.json", data)
        return True

    def report_and_etag(self, export: str, run_id: str) -> tuple[dict[str, Any], str] | None:
        """One run's stored report with its blob's etag (None: none, or not a readable report)."""
        found = self._read_report(f"{_checked(export, run_id)}.json")
        if found is None or found[0] is None:
            return None
        return found[0], found[1]

    def save_report_if(self, report: dict[str, Any], etag: str) -> bool:
        """Store a run's report only if its blob is still the one read (`etag`): of two invocations
        changing the same run (finalising it, claiming it), the first to write wins and the other
        is told so (False). `latest.json` follows when it is still this run's (a newer run's
        latest.json, written meanwhile, stays)."""
        data = _stamped(report)
        export, run_id = report["export"], report["run_id"]
        if not self._put_if(f"{_checked(export, run_id)}.json", data, etag):
            return False
        found = self.latest_report_and_etag(export)
        if found is not None and found[0].get("run_id") == run_id:
            self._put_if(f"runs/{export}/latest.json", data, found[1])
        return True

    def queue_report(self, report: dict[str, Any], latest_etag: str | None) -> bool:
        """Store a queued run's report as the export's latest, only if `latest.json` is still the
        one read (`latest_etag`; None: there was none), so two submits at the same moment cannot
        both queue a run: the second is told so (False) and reads again."""
        self.ensure()
        data = _stamped(report)
        export, run_id = report["export"], report["run_id"]
        if not self._put_if(f"runs/{export}/latest.json", data, latest_etag):
            return False
        self._put(f"{_checked(export, run_id)}.json", data)
        return True

    # -- runs whose import jobs are awaited, and follow-up runs ----------------------------------
    def mark_confirming(self, export: str, run_id: str) -> None:
        """Note that run `run_id` awaits its import jobs (its report says `confirming`), so any
        invocation can find it and finalise it, however many runs came after it."""
        self.ensure()
        with storage_errors(WHAT):
            self._container.upload_blob(f"confirming/{_checked(export, run_id)[5:]}", b"", overwrite=True)

    def unmark_confirming(self, export: str, run_id: str) -> None:
        with storage_errors(WHAT):
            try:
                self._container.delete_blob(f"confirming/{_checked(export, run_id)[5:]}")
            except ResourceNotFoundError:
                pass

    def confirming_runs(self, export: str) -> list[str]:
        """The runs of the export that await their import jobs, oldest first (one listing: a run
        stays here at most JOB_WAIT_SECONDS, then it is final)."""
        prefix = f"confirming/{export}/"
        with storage_errors(WHAT):
            try:
                names = [blob.name for blob in self._container.list_blobs(name_starts_with=prefix)]
            except ResourceNotFoundError:  # no container yet
                return []
        return sorted(name[len(prefix) :] for name in names)

    def request_followup(self, export: str, why: str) -> bool:
        """Ask for one more run of the export once the current one ends (a new snapshot arrived
        while it was queued or running). Requests coalesce: whether this one was the first."""
        self.ensure()
        with storage_errors(WHAT):
            try:
                self._container.upload_blob(
                    f"followups/{export}.json",
                    json.dumps({"why": why[:100], "at": _now()}).encode(),
                    content_settings=JSON,
                    match_condition=MatchConditions.IfMissing,
                )
            except ResourceExistsError:
                return False
        return True

    def has_followup(self, export: str) -> bool:
        with storage_errors(WHAT):
            return bool(self._container.get_blob_client(f"followups/{export}.json").exists())

    def take_followup(self, export: str) -> bool:
        """Take the export's follow-up request, if there is one (whether there was)."""
        with storage_errors(WHAT):
            try:
                self._container.delete_blob(f"followups/{export}.json")
            except ResourceNotFoundError:
                return False
        return True

    def save_rejects(self, export: str, run_id: str, stream: BinaryIO) -> str:
        """Upload a rejects CSV from an open file (streamed, not read into memory)."""
        self.ensure()
        name = f"rejects/{export}/{run_id}.csv"
        with storage_errors(WHAT):
            self._container.upload_blob(name, stream, overwrite=True, content_settings=CSV)
        return name

    # -- checkpoints ---------------------------------------------------------------------------
    def load_checkpoint(self, export: str) -> dict[str, Any] | None:
        with storage_errors(WHAT):
            try:
                data = self._container.download_blob(f"checkpoints/{export}.json").readall()
            except ResourceNotFoundError:
                return None
        try:
            loaded = json.loads(data)
        except ValueError:
            return None  # unreadable: no checkpoint (the run starts from the beginning)
        return loaded if isinstance(loaded, dict) else None

    def save_checkpoint(self, export: str, checkpoint: dict[str, Any]) -> None:
        self.ensure()
        with storage_errors(WHAT):
            self._container.upload_blob(
                f"checkpoints/{export}.json", json.dumps(checkpoint).encode(), overwrite=True, content_settings=JSON
            )

    def clear_checkpoint(self, export: str) -> None:
        with storage_errors(WHAT):
            try:
                self._container.delete_blob(f"checkpoints/{export}.json")
            except ResourceNotFoundError:
                pass

    # -- one run per export --------------------------------------------------------------------
    def acquire_run_lease(self, export: str, seconds: int) -> RunLease:
        """Hold the export's lease while a run goes on, or raise ExportError("run_in_progress")."""
        self.ensure()
        return acquire_run_lease(self._container, export, seconds)


def _stamped(report: dict[str, Any]) -> bytes:
    """A report as stored: with `updated_at` (liveness reads it), now unless the writer set it
    (the engine stamps its own writes; a run's report is stamped when it is stored)."""
    return json.dumps({"updated_at": utc_now(), **report} if "updated_at" not in report else report, indent=2).encode()


def _checked(export: str, run_id: str) -> str:
    """`runs/<export>/<run_id>`: a run's blob name, from names that are what they claim to be (a
    second line of defence behind the checks of HTTP input and queue messages)."""
    if not is_export_name(export) or not is_run_id(run_id):
        raise ExportError("bad_request", "not an export name and run id")
    return f"runs/{export}/{run_id}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _newest_first(run_ids: Iterable[str], before: str | None) -> list[str]:
    return sorted((run_id for run_id in run_ids if before is None or run_id < before), reverse=True)


def _months_then_years(top: str, floor: str) -> Iterator[str]:
    """Name parts covering every month from `top` down to `floor` (both YYYYMM), newest first: a
    year's twelve months one by one, then whole years (a year may repeat months already listed)."""
    year, month = int(top[:4]), int(top[4:])
    for _ in range(12):
        if f"{year:04d}{month:02d}" < floor:
            return
        yield f"{year:04d}{month:02d}"
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    for older in range(year, int(floor[:4]) - 1, -1):
        yield f"{older:04d}"
