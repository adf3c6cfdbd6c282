"""Reads a Customer Insights export (a CDM folder) from Blob Storage as a stream of rows.

Only this module talks to the source container. Metadata parsing is in `cdm.py`; the CSV records
of a partition are read by `csv_rows.py`, strictly as its CDM settings say and with bounded
memory: a partition that does not parse is refused (`source_invalid`, naming partition and line),
never guessed at, so a broken snapshot cannot look like a smaller segment.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobPrefix, ContainerClient

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
# What lies directly in a folder, as one page of a "/"-delimited listing shows it: (full name,
# True for a sub-folder). Sub-folder names end in "/".
ListEntry = tuple[str, bool]


@dataclass(frozen=True)
class FolderListing:
    """A folder listed up to a number of pages (`list_folder`): blob (relative to the folder) ->
    size, the last-modified time (ISO 8601) of the blobs directly in it, whether that was every
    blob, and how many List Blobs pages it took."""

    sizes: dict[str, int]
    modified: dict[str, str]
    complete: bool
    pages: int


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

    # -- discovery (shared/source/discovery.py): bounded listings and metadata, no partition read --
    def list_directory(self, prefix: str, marker: str | None, page_size: int) -> tuple[list[ListEntry], str | None]:
        """One page of what lies directly in the folder `prefix` ("" for the container, else a
        name ending in "/"): sub-folders and blobs, and the marker of the next page (None: last)."""
        with storage_errors("listing the source container"):
            try:
                pages = self._container.walk_blobs(
                    name_starts_with=prefix or None, delimiter="/", results_per_page=page_size
                ).by_page(continuation_token=marker)
                entries = [(item.name, isinstance(item, BlobPrefix)) for item in next(pages, None) or ()]
                following: str | None = getattr(pages, "continuation_token", None)  # the SDK's page iterator has it
                return entries, following or None
            except ResourceNotFoundError:
                raise ExportError("source_not_found", "the source container does not exist") from None
            except HttpResponseError as exc:
                if marker is not None and exc.status_code == 400:  # a marker Storage did not give
                    raise ExportError("bad_request", "the listing's continuation marker was refused by Storage") from None
                raise

    def list_folder(self, folder: str, max_pages: int, page_size: int, *, direct: bool = False) -> FolderListing:
        """Every blob under `folder` (`direct`: only those directly in it), with sizes, reading at
        most `max_pages` pages of the listing."""
        prefix = f"{folder}/" if folder else ""
        sizes: dict[str, int] = {}
        modified: dict[str, str] = {}
        used, complete = 0, True
        with storage_errors("listing a source folder"):
            try:
                pages: Iterator[Iterator[Any]]
                if direct:
                    pages = self._container.walk_blobs(prefix or None, delimiter="/", results_per_page=page_size).by_page()
                else:
                    pages = self._container.list_blobs(prefix or None, results_per_page=page_size).by_page()
                for page in pages:
                    used += 1
                    for blob in page:
                        if isinstance(blob, BlobPrefix):
                            continue
                        name = blob.name[len(prefix) :]
                        sizes[name] = blob.size
                        if "/" not in name and blob.last_modified is not None:
                            modified[name] = blob.last_modified.isoformat()
                    if used >= max_pages:
                        complete = not getattr(pages, "continuation_token", None)
                        break
            except ResourceNotFoundError:
                raise ExportError("source_not_found", "the source container does not exist") from None
        return FolderListing(sizes, modified, complete, used)

    def read_metadata(self, blob_name: str, size: int) -> bytes:
        """A metadata file (model.json, a manifest, an entity document), at most MAX_METADATA_BYTES."""
        return self._download(blob_name, size)[0]

    @staticmethod
    def metadata_file(existing: Collection[str]) -> str | None:
        """Which file of a folder's listing `open_segment` reads as its metadata: model.json, else
        default.manifest.cdm.json, else the first *.manifest.cdm.json; None when there is none."""
        return BlobSource._metadata_name({name: 0 for name in existing}, "")

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
