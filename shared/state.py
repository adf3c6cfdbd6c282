"""Everything written to the state container: run reports and rejects files.

Layout (under STATE_CONTAINER):
  runs/<export>/<run_id>.json    every run's report
  runs/<export>/latest.json      a copy of the newest report, read by the status endpoint
  rejects/<export>/<run_id>.csv  rows not sent, with partition, row number and reason
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.errors import ExportError

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
