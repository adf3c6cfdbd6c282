"""Everything written to the state container: run reports and rejects files.

Layout (under STATE_CONTAINER):
  runs/<export>/<run_id>.json    every run's report
  runs/<export>/latest.json      a copy of the newest report, read by the status endpoint
  rejects/<export>/<run_id>.csv  rows not sent, with partition, row number and reason
  checkpoints/<export>.json      how far an unfinished run got (snapshot, definition, position)
  delivered/<export>.tsv         what SendGrid applied: "email<TAB>hash" lines sorted by email
  locks/<export>                 an empty blob whose lease means "a run of this export is going on"
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, BinaryIO

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, ContainerClient, ContentSettings

from shared.errors import ExportError

log = logging.getLogger(__name__)

JSON = ContentSettings(content_type="application/json")
CSV = ContentSettings(content_type="text/csv; charset=utf-8")


def _unavailable(exc: Exception) -> ExportError:
    status = getattr(exc, "status_code", None) or ""
    return ExportError("storage_unavailable", f"state container failed: {type(exc).__name__} {status}".strip())


class StateStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        try:
            self._container.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise _unavailable(exc) from None
        self._ready = True

    def save_report(self, report: dict[str, Any]) -> None:
        self.ensure()
        data = json.dumps(report, indent=2).encode()
        export, run_id = report["export"], report["run_id"]
        try:
            self._container.upload_blob(f"runs/{export}/{run_id}.json", data, overwrite=True, content_settings=JSON)
            self._container.upload_blob(f"runs/{export}/latest.json", data, overwrite=True, content_settings=JSON)
        except AzureError as exc:
            raise _unavailable(exc) from None

    def latest_report(self, export: str) -> dict[str, Any] | None:
        try:
            data = self._container.download_blob(f"runs/{export}/latest.json").readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _unavailable(exc) from None
        return json.loads(data)

    def save_rejects(self, export: str, run_id: str, stream: BinaryIO) -> str:
        """Upload a rejects CSV from an open file (streamed, not read into memory)."""
        self.ensure()
        name = f"rejects/{export}/{run_id}.csv"
        try:
            self._container.upload_blob(name, stream, overwrite=True, content_settings=CSV)
        except AzureError as exc:
            raise _unavailable(exc) from None
        return name

    # -- the delivered record ------------------------------------------------------------------
    def download_record(self, export: str, path: str) -> str:
        """Stream the export's delivered record into `path`; its etag, or "" when there is none
        (the file is then empty)."""
        try:
            downloader = self._container.download_blob(f"delivered/{export}.tsv", max_concurrency=1)
            with open(path, "wb") as handle:
                for chunk in downloader.chunks():
                    handle.write(chunk)
            return str(downloader.properties.etag).strip('"')
        except ResourceNotFoundError:
            open(path, "wb").close()
            return ""
        except AzureError as exc:
            raise _unavailable(exc) from None

    def save_record(self, export: str, path: str) -> None:
        self.ensure()
        try:
            with open(path, "rb") as stream:
                self._container.upload_blob(f"delivered/{export}.tsv", stream, overwrite=True,
                                            content_settings=ContentSettings(content_type="text/tab-separated-values"))
        except AzureError as exc:
            raise _unavailable(exc) from None

    # -- checkpoints ---------------------------------------------------------------------------
    def load_checkpoint(self, export: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._container.download_blob(f"checkpoints/{export}.json").readall())
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise _unavailable(exc) from None

    def save_checkpoint(self, export: str, checkpoint: dict[str, Any]) -> None:
        self.ensure()
        try:
            self._container.upload_blob(f"checkpoints/{export}.json", json.dumps(checkpoint).encode(),
                                        overwrite=True, content_settings=JSON)
        except AzureError as exc:
            raise _unavailable(exc) from None

    def clear_checkpoint(self, export: str) -> None:
        try:
            self._container.delete_blob(f"checkpoints/{export}.json")
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise _unavailable(exc) from None

    # -- one run per export --------------------------------------------------------------------
    def acquire_run_lease(self, export: str, seconds: int) -> RunLease:
        """Hold the export's lease while a run goes on, or raise ExportError("run_in_progress")."""
        self.ensure()
        blob = self._container.get_blob_client(f"locks/{export}")
        try:
            blob.upload_blob(b"", overwrite=False)
        except ResourceExistsError:
            pass  # the lock blob is made once and kept; a held lease also answers "exists"
        except AzureError as exc:
            raise _unavailable(exc) from None
        lease = BlobLeaseClient(blob)
        try:
            lease.acquire(lease_duration=seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                raise ExportError("run_in_progress", f"export '{export}' is already running; try again later") from None
            raise _unavailable(exc) from None
        except AzureError as exc:
            raise _unavailable(exc) from None
        return RunLease(lease, seconds)


class RunLease:
    """A blob lease renewed in the background while the run lives. A crashed run stops renewing
    and the lease ends by itself within `seconds` (Blob Storage allows 15 to 60)."""

    def __init__(self, lease: BlobLeaseClient, seconds: int) -> None:
        self._lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, args=(seconds / 3,), name="run-lease", daemon=True)
        self._thread.start()

    def _renew(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self._lease.renew()
            except AzureError as exc:
                log.warning("could not renew the run lease (%s); another run may start", type(exc).__name__)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self._lease.release()
        except AzureError as exc:  # it will expire by itself
            log.warning("could not release the run lease (%s); it expires by itself", type(exc).__name__)
