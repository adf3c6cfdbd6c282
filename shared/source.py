"""Reads a Customer Insights export (a CDM folder) from Blob Storage as a stream of rows.

Only this module talks to the source container. Metadata parsing is in `cdm.py`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared import cdm
from shared.errors import ExportError

MODEL_JSON = "model.json"
MANIFEST_SUFFIX = ".manifest.cdm.json"
# Downloads come in pieces of this size, so memory does not grow with a partition's size.
DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Partition:
    name: str
    blob_name: str
    size: int
    fmt: cdm.CsvFormat


@dataclass(frozen=True)
class Segment:
    """One snapshot of a segment: its columns and the partitions that hold its rows."""

    folder: str
    metadata_blob: str
    etag: str
    last_modified: str
    columns: tuple[str, ...]
    partitions: tuple[Partition, ...]

    @property
    def snapshot_id(self) -> str:
        return f"{self.metadata_blob}@{self.etag}"

    def describe(self) -> dict[str, Any]:
        return {
            "metadata": self.metadata_blob,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "partitions": [p.blob_name for p in self.partitions],
            "bytes": sum(p.size for p in self.partitions),
        }


# (partition name, record number in it, values in column order): a plain tuple, made per row.
SourceRow = tuple[str, int, list[str]]


def storage_error(exc: Exception) -> ExportError:
    # Azure's messages can be long; the type and status are what an operator needs.
    status = getattr(exc, "status_code", None)
    return ExportError("storage_unavailable", f"Blob Storage failed: {type(exc).__name__} {status or ''}".strip())


class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks, without copying them whole."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._view:
            try:
                self._view = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._view))
        buffer[:count] = self._view[:count]
        self._view = self._view[count:]
        return count


class BlobSource:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _download(self, blob_name: str) -> tuple[bytes, Any]:
        try:
            downloader = self._container.download_blob(blob_name)
            return downloader.readall(), downloader.properties
        except ResourceNotFoundError:
            raise ExportError("source_not_found", f"'{blob_name}' is not in the source container") from None
        except AzureError as exc:
            raise storage_error(exc) from None

    def _list(self, folder: str) -> dict[str, int]:
        prefix = f"{folder}/" if folder else ""
        try:
            return {
                blob.name[len(prefix):]: blob.size
                for blob in self._container.list_blobs(name_starts_with=prefix)
            }
        except ResourceNotFoundError:
            raise ExportError("source_not_found", "the source container does not exist") from None
        except AzureError as exc:
            raise storage_error(exc) from None

    def open_segment(self, folder: str, segment: str) -> Segment:
        """Read the folder's metadata and find every partition of `segment` in storage.

        Refuses (before any row is read) when the metadata is missing or broken, or when a
        partition it lists is not in storage: a half-present snapshot is not the segment.
        """
        existing = self._list(folder)
        prefix = f"{folder}/" if folder else ""
        if cdm_name := self._metadata_name(existing, folder):
            data, properties = self._download(prefix + cdm_name)
        else:
            raise ExportError(
                "source_not_found",
                f"no {MODEL_JSON} or *{MANIFEST_SUFFIX} in '{folder}' of the source container",
            )
        if cdm_name == MODEL_JSON:
            schema = cdm.parse_model_json(data, segment)
            columns, refs = schema.columns, schema.partitions
        else:
            entity = cdm.parse_manifest(data, segment, cdm_name)
            document = entity.document_path
            if document not in existing:
                raise ExportError("source_invalid", f"entity document '{document}' is not in '{folder}'")
            doc_data, _ = self._download(prefix + document)
            columns = cdm.parse_entity_document(doc_data, entity.definition_name, document)
            refs = entity.partitions
        partitions = []
        missing = []
        for ref in refs:
            blob = cdm.resolve_location(ref.location, existing)
            if blob is None:
                missing.append(ref.name)
                continue
            partitions.append(Partition(ref.name, prefix + blob, existing[blob], ref.fmt))
        if missing:
            raise ExportError(
                "source_invalid",
                f"{len(missing)} partition(s) listed in {cdm_name} are not in storage "
                f"(first: '{missing[0]}'); refusing to export a partial snapshot",
            )
        return Segment(
            folder=folder,
            metadata_blob=prefix + cdm_name,
            etag=str(properties.etag).strip('"'),
            last_modified=properties.last_modified.isoformat() if properties.last_modified else "",
            columns=columns,
            partitions=tuple(partitions),
        )

    @staticmethod
    def _metadata_name(existing: dict[str, int], folder: str) -> str | None:
        if MODEL_JSON in existing:
            return MODEL_JSON
        manifests = sorted(n for n in existing if "/" not in n and n.endswith(MANIFEST_SUFFIX))
        if "default" + MANIFEST_SUFFIX in manifests:
            return "default" + MANIFEST_SUFFIX
        return manifests[0] if manifests else None

    def open_partition(self, partition: Partition) -> io.TextIOWrapper:
        try:
            downloader = self._container.download_blob(partition.blob_name, max_concurrency=1)
        except AzureError as exc:
            raise storage_error(exc) from None
        raw = io.BufferedReader(_ChunkStream(downloader.chunks()), buffer_size=64 * 1024)
        # surrogateescape: bytes invalid in the declared encoding survive as lone surrogates, so
        # mapping can reject just those rows instead of the whole read failing.
        return io.TextIOWrapper(raw, encoding=partition.fmt.encoding, errors="surrogateescape", newline="")

    def count_rows(self, segment: Segment) -> int:
        """Data rows in the segment (a cheaper pass: parse only, no mapping)."""
        return sum(1 for _ in self.rows(segment))

    def rows(self, segment: Segment) -> Iterator[SourceRow]:
        """Every data row of the segment, partition by partition, streamed."""
        for partition in segment.partitions:
            with self.open_partition(partition) as text:
                try:
                    for number, values in cdm.read_records(text, partition.fmt, segment.columns):
                        yield partition.name, number, values
                except AzureError as exc:
                    raise storage_error(exc) from None
