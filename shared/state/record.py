"""The delivered record's blob, `delivered/<export>.tsv` in the state container: read into a file,
replaced whole, or staged block by block and committed later. `StateStore` (store.py) owns the
container and holds one `DeliveredRecord` as `store.record`; nothing else writes the record.

Staging is how a first delivery stores its record without waiting for it: the record as it is
when every contact sent is applied goes up as uncommitted blocks while the run confirms its
import jobs, and is committed once they are confirmed applied (one request). Uncommitted blocks
are invisible: readers see the record as it was (none, for a first delivery) until the commit,
and Azure drops them when the blob is next committed, or after a week (Put Block:
https://learn.microsoft.com/rest/api/storageservices/put-block#remarks). Every replacement
carries a condition: the record must still be the one the run read.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shared.errors import ExportError
from shared.invocation import carry_invocation
from shared.state.journal import Journal
from shared.storage import storage_errors

TSV = ContentSettings(content_type="text/tab-separated-values")
WHAT = "the state container"
BLOCK_BYTES = 4 << 20  # a staged block: what the SDK's own uploads use for a block blob
UPLOADS_IN_FLIGHT = 2  # as the record's upload had before it was staged (max_concurrency=2)


class RecordInfo(NamedTuple):
    etag: str  # "" when there is no record
    list_ids: tuple[str, ...] | None  # the lists its contacts were delivered to (None: not known)
    fields: tuple[str, ...] | None  # the field codes its entries' unset codes are relative to


@dataclass(frozen=True)
class StagedRecord:
    """A record uploaded as blocks and not committed yet: their ids, in order."""

    block_ids: tuple[str, ...]


def record_metadata(list_ids: tuple[str, ...], fields: list[str] | None) -> dict[str, str]:
    metadata = {"list_ids": ",".join(sorted(list_ids))}
    if fields is not None:
        metadata["fields"] = ",".join(fields) or "-"  # "-": mapped no field but the email
    return metadata


def record_fields(properties: object) -> tuple[str, ...] | None:
    """The field codes a record was written against, from its blob properties (None: unknown,
    a record an earlier release wrote)."""
    value = (getattr(properties, "metadata", None) or {}).get("fields")
    return None if value is None else tuple(code for code in value.split(",") if code and code != "-")


def _condition(read_etag: str) -> dict[str, Any]:
    """Replace only the record the run read ("" for none: only if there is still none)."""
    if read_etag:
        return {"etag": f'"{read_etag}"', "match_condition": MatchConditions.IfNotModified}
    return {"match_condition": MatchConditions.IfMissing}


def _changed_meanwhile(export: str) -> ExportError:
    return ExportError(
        "run_in_progress",
        f"the delivered record of '{export}' was changed by another run; "
        "this run's record was not stored (the next run compares again)",
    )


class DeliveredRecord:
    """The delivered record of each export, in the store's container (`ensure` creates it), and
    its journal (`journal`: what runs were about to send, journal.py)."""

    def __init__(self, container: ContainerClient, ensure: Callable[[], None]) -> None:
        self._container = container
        self.ensure = ensure
        self.journal = Journal(container, ensure)

    def _blob(self, export: str) -> BlobClient:
        return self._container.get_blob_client(f"delivered/{export}.tsv")

    def download(self, export: str, path: str) -> RecordInfo:
        """Stream the export's delivered record into `path` (empty when there is none); what is
        kept with it."""
        with storage_errors(WHAT):
            try:
                downloader = self._blob(export).download_blob(max_concurrency=1)
            except ResourceNotFoundError:
                open(path, "wb").close()
                return RecordInfo("", None, None)
            with open(path, "wb") as handle:
                for chunk in downloader.chunks():
                    handle.write(chunk)
            lists = (downloader.properties.metadata or {}).get("list_ids")
            return RecordInfo(
                str(downloader.properties.etag).strip('"'),
                tuple(lists.split(",")) if lists else None,
                record_fields(downloader.properties),
            )

    def save(self, export: str, path: str, read_etag: str, list_ids: tuple[str, ...], fields: list[str] | None = None) -> str:
        """Replace the record with the file at `path`, only if it is still the one the run read
        (`read_etag`, "" for none): a record changed meanwhile means another run went on beside
        this one. Kept with it: `list_ids`, the lists this run delivered to, and `fields`, the
        codes of the fields the run mapped (what its entries' unset codes are relative to). Returns
        the new record's etag.

        Always staged and committed, never one Put Blob: a run that stopped after staging its
        record leaves uncommitted blocks, and Put Blob "only if missing" is refused on such a blob
        (Azurite answers 409) where Put Block List takes it, as the SDK's own uploads of large
        blobs rely on (Azure/azure-sdk-for-java issue 6017)."""
        with open(path, "rb") as stream:
            staged = self.stage(export, iter(lambda: stream.read(BLOCK_BYTES), b""))
        return self.commit(export, staged, read_etag, list_ids, fields)

    def stage(self, export: str, pieces: Iterable[bytes], block_bytes: int = BLOCK_BYTES) -> StagedRecord:
        """Upload a record's bytes (`pieces`, in order) as uncommitted blocks of about
        `block_bytes`; nothing is visible until `commit`. Blocks go up on two uploader
        threads while the caller makes the next one (the threads only send the block they are
        given; the ids and the block being filled are the caller's), so at most three are held."""
        self.ensure()
        blob = self._blob(export)
        # Every uncommitted block id of a blob must have the same length, and a blob may hold an
        # interrupted upload's blocks for up to 7 days (then Put Block answers 400
        # InvalidBlobOrBlock: learn.microsoft.com/troubleshoot/azure/azure-storage/blobs/
        # connectivity/invalid-blob-or-block-content-or-invalid-block-list). The SDK's own
        # uploads (an earlier release's records) use 48 characters (_shared/uploads.py:
        # f"{uuid4().int:048d}"), and so do these: a 32-character tag, a 16-digit number.
        tag = uuid.uuid4().hex
        ids: list[str] = []
        block = bytearray()
        with (
            storage_errors(WHAT),
            ThreadPoolExecutor(UPLOADS_IN_FLIGHT, "record-upload", initializer=carry_invocation()) as uploader,
        ):
            sending: deque[Future[Any]] = deque()

            def send() -> None:
                ids.append(f"{tag}{len(ids):016d}")
                data = bytes(block)
                block.clear()
                if len(sending) == UPLOADS_IN_FLIGHT:
                    sending.popleft().result()
                sending.append(uploader.submit(blob.stage_block, ids[-1], data))

            for piece in pieces:
                block += piece
                if len(block) >= block_bytes:
                    send()
            if block:
                send()
            for future in sending:
                future.result()
        return StagedRecord(tuple(ids))

    def commit(
        self, export: str, staged: StagedRecord, read_etag: str, list_ids: tuple[str, ...], fields: list[str] | None = None
    ) -> str:
        """Make a staged record the record, on the same condition and with the same metadata as
        `save`; its etag."""
        self.ensure()
        with storage_errors(WHAT):
            try:
                committed = self._blob(export).commit_block_list(
                    [BlobBlock(block_id) for block_id in staged.block_ids],
                    content_settings=TSV,
                    metadata=record_metadata(list_ids, fields),
                    **_condition(read_etag),
                )
            except (ResourceModifiedError, ResourceExistsError):
                raise _changed_meanwhile(export) from None
        return str(committed.get("etag", "")).strip('"')
