"""One run per export at a time: a blob lease on `locks/<export>` in the state container.

The lease is renewed by one background thread (the only thread that touches it until release).
When a renewal fails, the lease may already belong to another run: `lost` is set, and the run
stops sending at its next request (checkpointed, resumable) instead of going on beside a second
run. A crashed run stops renewing and the lease ends by itself within `seconds` (15 to 60).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.errors import ExportError
from shared.invocation import carry_invocation
from shared.storage import storage_error, storage_errors

log = logging.getLogger(__name__)

LOCKS_PREFIX = "locks/"


class RunLease:
    def __init__(self, lease: BlobLeaseClient, seconds: int) -> None:
        self._lease = lease
        self.lost = threading.Event()  # set by the renewer thread only
        self._stop = threading.Event()
        # Started in the run's invocation: its log lines carry that invocation's id.
        self._thread = threading.Thread(target=self._renew, args=(carry_invocation(), seconds / 3), name="run-lease", daemon=True)
        self._thread.start()

    @property
    def id(self) -> str:
        return str(self._lease.id)

    def _renew(self, adopt_invocation: Callable[[], None], every: float) -> None:
        adopt_invocation()
        while not self._stop.wait(every):
            try:
                self._lease.renew()
            except AzureError as exc:
                log.warning("could not renew the run lease (%s); the run stops sending", type(exc).__name__)
                self.lost.set()
                return

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.lost.is_set():
            return
        try:
            self._lease.release()
        except AzureError as exc:  # it will expire by itself
            log.warning("could not release the run lease (%s); it expires by itself", type(exc).__name__)


def acquire_run_lease(container: ContainerClient, export: str, seconds: int) -> RunLease:
    """Hold the export's lease while a run goes on, or raise ExportError("run_in_progress")."""
    blob = container.get_blob_client(LOCKS_PREFIX + export)
    try:
        blob.upload_blob(b"", overwrite=False)
    except ResourceExistsError:
        pass  # the lock blob is made once and kept; a held lease also answers "exists"
    except AzureError as exc:
        raise storage_error("the run lock", exc) from None
    lease = BlobLeaseClient(blob)
    with storage_errors("the run lock"):
        try:
            lease.acquire(lease_duration=seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:
                raise ExportError("run_in_progress", f"export '{export}' is already running; try again later") from None
            raise
    return RunLease(lease, seconds)
