"""Reads a Customer Insights export (a CDM folder) from Blob Storage as a stream of rows.

Only this module talks to the source container. Metadata parsing is in `cdm.py`; the CSV records
of a partition are read here (`read_records`), strictly as its CDM settings say and with bounded
memory: a partition that does not parse is refused (`source_invalid`, naming partition and line),
never guessed at, so a broken snapshot cannot look like a smaller segment.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared import cdm
from shared.errors import ExportError
from shared.storage_errors import storage_errors

MODEL_JSON = "model.json"
MANIFEST_SUFFIX = ".manifest.cdm.json"
# Downloads come in pieces of this size, so memory does not grow with a partition's size.
DOWNLOAD_CHUNK_BYTES = 4 * 1024 * 1024
# model.json, a manifest or an entity document larger than this is refused before it is parsed
# (Customer Insights' own are a few KB; a metadata file is read whole).
MAX_METADATA_BYTES = 16 * 1024 * 1024
# One CSV record (all its lines) may hold at most this many characters; mapping rejects any value
# over 4,096 characters anyway. A longer record is skipped as a rejected row when the reader can
# find the next record for sure, else the partition is refused. Memory stays near this bound.
MAX_RECORD_CHARS = 1024 * 1024
csv.field_size_limit(MAX_RECORD_CHARS + 1)  # never the binding limit: records are capped first


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
        return {"metadata": self.metadata_blob, "etag": self.etag, "last_modified": self.last_modified,
                "partitions": [p.blob_name for p in self.partitions],
                "bytes": sum(p.size for p in self.partitions)}


# (partition name, record number in it, values in column order): a plain tuple, made per row.
SourceRow = tuple[str, int, list[str]]


class OversizedRecord(list[str]):
    """Stands in for a record over MAX_RECORD_CHARS that was skipped: it holds no values, so
    mapping rejects it as a row with the wrong number of columns (a structural reject)."""


class _RecordTooLarge(Exception):
    """args[0]: whether the reader can find the next record for sure."""


class _Lines:
    """The physical lines of a partition for csv.reader, at most `cap` characters per record.

    csv.reader pulls one line at a time and never reads ahead, so `start_record()` (called after
    each record) marks where the next one begins; `line` counts physical lines for messages.
    """

    def __init__(self, text: TextIO, quote: str | None, cap: int) -> None:
        self._text, self._quote, self._cap = text, quote, cap
        self._readline = text.readline
        self.line, self.record_line, self._used = 0, 1, 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:  # once per physical line: kept short
        used = self._used
        piece = self._readline(self._cap - used + 1)
        if not piece:
            raise StopIteration
        if not used:
            self.record_line = self.line + 1
        used = self._used = used + len(piece)
        if used > self._cap:
            # Safe to skip only when the record began on this line and no quote can hide a line
            # break: then the end of this physical line is the end of the record.
            resync = used == len(piece) and not (self._quote and self._quote in piece)
            raise _RecordTooLarge(resync)
        if piece[-1] in "\r\n":
            self.line += 1
        return piece

    def start_record(self) -> None:
        self._used = 0

    def skip_line(self) -> bool:
        """Read to the end of the current physical line; False if a quote char was on it."""
        while True:
            piece = self._text.readline(64 * 1024)
            if self._quote and self._quote in piece:
                return False
            if not piece or piece[-1] in "\r\n":
                self.line += 1
                return True


def read_records(
    text: TextIO, fmt: cdm.CsvFormat, columns: tuple[str, ...], what: str = "partition",
    max_record_chars: int = MAX_RECORD_CHARS,
) -> Iterator[tuple[int, list[str]]]:
    """Yield (record number from 1, values in `columns` order) for each data record.

    Blank lines and a header row are not counted; a header naming the columns in another order
    puts values back in `columns` order (any other header is informational). A record over the
    cap comes out as an `OversizedRecord`; anything that does not parse as `fmt` says (an
    unterminated quote, text after a closing quote, undecodable UTF-16) raises source_invalid.
    """
    lines = _Lines(text, '"' if fmt.quoting else None, max_record_chars)
    reader = csv.reader(lines, delimiter=fmt.delimiter, strict=True,
                        quoting=csv.QUOTE_MINIMAL if fmt.quoting else csv.QUOTE_NONE)
    order: list[int] | None = None
    number, header = 0, fmt.header
    while True:
        lines.start_record()
        try:
            values = next(reader)
        except StopIteration:
            return
        except _RecordTooLarge as exc:
            if not exc.args[0] or not lines.skip_line():
                raise cdm.invalid(f"{what}: the record at line {lines.record_line} is over {max_record_chars} "
                                  "characters and its end cannot be found for sure; nothing was read from it")
            number += 1
            yield number, OversizedRecord()
            continue
        except (csv.Error, UnicodeDecodeError) as exc:
            problem = f"{exc}" if isinstance(exc, csv.Error) else f"not valid {fmt.encoding}"
            raise cdm.invalid(f"{what} is not valid CSV from line {lines.record_line}: {problem}") from None
        if header:
            header = False
            names = [h.strip() for h in values]
            if names != list(columns) and sorted(names) == sorted(columns):
                order = [names.index(c) for c in columns]
            continue
        if not values:
            continue
        number += 1
        if order is not None and len(values) == len(order):
            yield number, [values[i] for i in order]
        else:
            yield number, values


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
                return {
                    blob.name[len(prefix):]: blob.size
                    for blob in self._container.list_blobs(name_starts_with=prefix)
                }
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
            raise ExportError("source_not_found",
                              f"no {MODEL_JSON} or *{MANIFEST_SUFFIX} in '{folder}' of the source container")
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
                raise cdm.invalid(f"partitions '{listed[blob]}' and '{ref.name}' in {cdm_name} are the same "
                                  f"blob '{prefix + blob}'; refusing a snapshot that lists a file twice")
            listed[blob] = ref.name
            partitions.append(Partition(ref.name, prefix + blob, existing[blob], ref.fmt))
        if missing:
            raise cdm.invalid(f"{len(missing)} partition(s) listed in {cdm_name} are not in storage "
                              f"(first: '{missing[0]}'); refusing to export a partial snapshot")
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
        with storage_errors("reading a source partition"):
            downloader = self._container.download_blob(partition.blob_name, max_concurrency=1)
        raw = io.BufferedReader(_ChunkStream(downloader.chunks()), buffer_size=64 * 1024)
        # surrogateescape: bytes invalid in the declared encoding survive as lone surrogates, so
        # mapping can reject just those rows instead of the whole read failing.
        return io.TextIOWrapper(raw, encoding=partition.fmt.encoding, errors="surrogateescape", newline="")

    def rows(self, segment: Segment) -> Iterator[SourceRow]:
        """Every data row of the segment, partition by partition, streamed."""
        for partition in segment.partitions:
            what = f"partition '{partition.name}'"
            with self.open_partition(partition) as text, storage_errors("reading a source partition"):
                for number, values in read_records(text, partition.fmt, segment.columns, what):
                    yield partition.name, number, values
