"""Reads a Customer Insights export (a CDM folder) from Blob Storage as a stream of rows.

Only this module talks to the source container. Metadata parsing is in `cdm.py`; the CSV records
of a partition are read by `csv_rows.py`, strictly as its CDM settings say and with bounded
memory: a partition that does not parse is refused (`source_invalid`, naming partition and line),
never guessed at, so a broken snapshot cannot look like a smaller segment.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.errors import ExportError
from shared.source import cdm
from shared.source.csv_rows import BUFFER_BYTES, ChunkStream, GuardedStream, guarded_records
from shared.storage import storage_errors

MODEL_JSON = "model.json"
MANIFEST_SUFFIX = ".manifest.cdm.json"
# Downloads come in pieces of this size, so memory does not grow with a partition's size.
DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# model.json, a manifest or an entity document larger than this is refused before it is parsed
# (Customer Insights' own are a few KB; a metadata file is read whole).
MAX_METADATA_BYTES = 16 * 1024 * 1024


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


class BlobSource:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def _download(self, blob_name: str, size: int) -> tuple[bytes, Any]:
        """A metadata blob, read whole but never more than MAX_METADATA_BYTES of it."""
        if size > MAX_METADATA_BYTES:
            raise cdm.invalid(f"'{blob_name}' is {size} bytes; metadata over {MAX_METADATA_BYTES} is refused")
        with storage_errors("reading the source metadata"):
            try:
                # Ranged, so a blob that grew since it was listed is still read only up to the cap.
                downloader = self._container.download_blob(blob_name, offset=0, length=MAX_METADATA_BYTES + 1)
                data = downloader.readall()
            except ResourceNotFoundError:
                raise ExportError("source_not_found", f"'{blob_name}' is not in the source container") from None
        if len(data) > MAX_METADATA_BYTES:
            raise cdm.invalid(f"'{blob_name}' is over {MAX_METADATA_BYTES} bytes; metadata that large is refused")
        return data, downloader.properties

    def _list(self, folder: str) -> dict[str, int]:
        prefix = f"{folder}/" if folder else ""
        with storage_errors("listing the source folder"):
            try:
                return {blob.name[len(prefix) :]: blob.size for blob in self._container.list_blobs(name_starts_with=prefix)}
            except ResourceNotFoundError:
                raise ExportError("source_not_found", "the source container does not exist") from None

    def open_segment(self, folder: str, segment: str) -> Segment:
        """Read the folder's metadata and find every partition of `segment` in storage.

        Refuses (before any row is read) when the metadata is missing or broken, or when a
        partition it lists is not in storage: a half-present snapshot is not the segment.
        """
        existing = self._list(folder)
        prefix = f"{folder}/" if folder else ""
        if not (cdm_name := self._metadata_name(existing, folder)):
            raise ExportError("source_not_found", f"no {MODEL_JSON} or *{MANIFEST_SUFFIX} in '{folder}' of the source container")
        data, properties = self._download(prefix + cdm_name, existing[cdm_name])
        if cdm_name == MODEL_JSON:
            schema = cdm.parse_model_json(data, segment)
            columns, refs = schema.columns, schema.partitions
        else:
            entity = cdm.parse_manifest(data, segment, cdm_name)
            document = entity.document_path
            if document not in existing:
                raise ExportError("source_invalid", f"entity document '{document}' is not in '{folder}'")
            doc_data, _ = self._download(prefix + document, existing[document])
            columns = cdm.parse_entity_document(doc_data, entity.definition_name, document)
            refs = entity.partitions
        partitions: list[Partition] = []
        missing: list[str] = []
        listed: dict[str, str] = {}  # blob -> the partition that named it first
        for ref in refs:
            blob = cdm.resolve_location(ref.location, existing)
            if blob is None:
                missing.append(ref.name)
                continue
            if blob in listed:  # read twice, every row would be a duplicate of itself
                raise cdm.invalid(
                    f"partitions '{listed[blob]}' and '{ref.name}' in {cdm_name} are the same "
                    f"blob '{prefix + blob}'; refusing a snapshot that lists a file twice"
                )
            listed[blob] = ref.name
            partitions.append(Partition(ref.name, prefix + blob, existing[blob], ref.fmt))
        if missing:
            raise cdm.invalid(
                f"{len(missing)} partition(s) listed in {cdm_name} are not in storage "
                f"(first: '{missing[0]}'); refusing to export a partial snapshot"
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

    def _opener(self, partition: Partition, what: str) -> Callable[[bool], tuple[TextIO, list[int] | None]]:
        """Opens the partition as text for `records.guarded_records`; a second opening reads the
        version the first one read, or refuses the partition if it changed meanwhile."""
        versions: list[str] = []

        def open_text(guarded: bool) -> tuple[TextIO, list[int] | None]:
            condition: dict[str, Any] = {}
            if versions:
                condition = {"etag": versions[0], "match_condition": MatchConditions.IfNotModified}
            with storage_errors("reading a source partition"):
                try:
                    downloader = self._container.download_blob(partition.blob_name, max_concurrency=1, **condition)
                except ResourceModifiedError:
                    raise cdm.invalid(
                        f"{what} changed while it was being read; nothing after its first "
                        "records was read (run again once the snapshot is complete)"
                    ) from None
            versions.append(str(downloader.properties.etag))
            stream = GuardedStream(downloader.chunks()) if guarded else ChunkStream(downloader.chunks())
            # surrogateescape: bytes invalid in the declared encoding survive as lone surrogates, so
            # mapping can reject just those rows instead of the whole read failing.
            text = io.TextIOWrapper(
                io.BufferedReader(stream, buffer_size=BUFFER_BYTES),
                encoding=partition.fmt.encoding,
                errors="surrogateescape",
                newline="",
            )
            return text, stream.progress if isinstance(stream, GuardedStream) else None

        return open_text

    def rows(self, segment: Segment) -> Iterator[SourceRow]:
        """Every data row of the segment, partition by partition, streamed."""
        for partition in segment.partitions:
            what = f"partition '{partition.name}'"
            with storage_errors("reading a source partition"):
                yield from guarded_records(self._opener(partition, what), partition.fmt, segment.columns, what, partition.name)
