"""The delivered record's journal, `journal/<export>.tsv` in the state container: what a run was
about to send, written before each request, so that no run ever forgets a contact it may have
put on a list. The record holds it as `record.journal` (record.py); nothing else writes it.

It is an Append Blob of key lines (`shared/delta/lines.py`: email, hash, unset codes, send
position and where the row came from), one per contact of each request, appended before the
request goes out: a contact SendGrid may have
taken is always in it. Which requests SendGrid accepted, and with which import job, the run's
checkpoint says. The run that stores its record (which holds what became of every contact it
sent) removes the journal after it; a later run that finds the journal without a checkpoint that
applies merges it into the record first (`shared/run/reading.py`). Only the run holding the
export's lease writes it.

Azure takes an append block of up to 4 MiB (100 MiB from service version 2022-11-02), and an
append blob of up to 50,000 blocks: https://learn.microsoft.com/rest/api/storageservices/append-block
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from shared.errors import ExportError
from shared.storage import storage_errors

WHAT = "the state container (the record's journal)"
TSV = ContentSettings(content_type="text/tab-separated-values")
APPEND_BLOCK_BYTES = 4 << 20  # the most an append block takes in every service version


class JournalInfo(NamedTuple):
    """What a journal's runs delivered to and mapped (its blob's metadata; None: not known)."""

    list_ids: tuple[str, ...] | None
    fields: tuple[str, ...] | None


def journal_metadata(list_ids: tuple[str, ...], fields: list[str]) -> dict[str, str]:
    return {"list_ids": ",".join(sorted(list_ids)), "fields": ",".join(fields) or "-"}


class Journal:
    """The journal of each export, in the store's container (`ensure` creates the container)."""

    def __init__(self, container: ContainerClient, ensure: Callable[[], None]) -> None:
        self._container = container
        self.ensure = ensure

    def _blob(self, export: str) -> BlobClient:
        return self._container.get_blob_client(f"journal/{export}.tsv")

    def append(self, export: str, lines: bytes, list_ids: tuple[str, ...], fields: list[str]) -> None:
        """Append whole lines (created with `list_ids` and `fields`, what the run delivers to and
        maps, on first use). Raises ExportError when they could not all be written: the caller
        then sends nothing of them."""
        blob = self._blob(export)
        with storage_errors(WHAT):
            for piece in append_blocks(lines):
                try:
                    blob.append_block(piece)
                except ResourceNotFoundError:
                    self.ensure()
                    try:
                        blob.create_append_blob(
                            content_settings=TSV,
                            metadata=journal_metadata(list_ids, fields),
                            match_condition=MatchConditions.IfMissing,
                        )
                    except ResourceExistsError:
                        pass
                    blob.append_block(piece)

    def download(self, export: str, path: str) -> JournalInfo | None:
        """Stream the export's journal into `path`; None (and nothing written) when there is none."""
        with storage_errors(WHAT):
            try:
                downloader = self._blob(export).download_blob(max_concurrency=1)
            except ResourceNotFoundError:
                return None
            with open(path, "wb") as handle:
                for chunk in downloader.chunks():
                    handle.write(chunk)
            metadata = downloader.properties.metadata or {}
        lists, fields = metadata.get("list_ids"), metadata.get("fields")
        return JournalInfo(
            tuple(lists.split(",")) if lists else None,
            None if fields is None else tuple(code for code in fields.split(",") if code and code != "-"),
        )

    def remove(self, export: str) -> None:
        with storage_errors(WHAT):
            try:
                self._blob(export).delete_blob()
            except ResourceNotFoundError:
                pass


def append_blocks(lines: bytes, size: int = APPEND_BLOCK_BYTES) -> list[bytes]:
    """`lines` in pieces of at most `size` bytes, each of whole lines."""
    pieces, start = [], 0
    while start < len(lines):
        end = len(lines) if len(lines) - start <= size else lines.rfind(b"\n", start, start + size) + 1
        if end <= start:
            raise ExportError("storage_unavailable", f"a journal line is over {size} bytes")
        pieces.append(lines[start:end])
        start = end
    return pieces
