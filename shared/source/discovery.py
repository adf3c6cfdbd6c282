"""Finding and describing the Customer Insights exports in the source container (GET /api/sources),
from listings and metadata only: no partition is read.

The walk (walk.py) finds each folder holding model.json or a *.manifest.cdm.json directly. Such
a folder is described here: every entity's columns with their declared CDM data types, its
partitions and their bytes, from one listing of the folder and its metadata files, parsed by
`cdm` (the reader a run uses), partition locations resolved as a run resolves them.

Bounded: a request reads at most `Limits.request_pages` List Blobs pages and `request_bytes` of
metadata. When either would run out, it stops where it is, and its continuation token (the
walk's place, opaque to callers) carries on from there. A folder is described whole or not at
all: one that does not fit in what is left comes first in the next request, and a fresh budget
always fits one folder (`Limits` checks). A broken folder is described with a short `problem`
that names files and entities but never quotes their content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.errors import ExportError
from shared.source import cdm
from shared.source.blob import MODEL_JSON, BlobSource, FolderListing
from shared.source.walk import BAD_TOKEN, Budget, Limits, OutOfBudget, Walk

__all__ = ["Budget", "Entity", "FolderInfo", "Limits", "OutOfBudget", "describe_folder", "discover", "short_reason", "shown"]

MAX_PROBLEMS_SHOWN = 3


# -- what a folder is -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entity:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, CDM data type), in column order
    partitions: int
    bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [{"name": n, "data_type": t} for n, t in self.columns],
            "partitions": self.partitions,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class FolderInfo:
    folder: str
    metadata: str | None
    snapshot_time: str | None  # the metadata file's last change: when the newest snapshot was published
    entities: tuple[Entity, ...] = ()
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "metadata": self.metadata,
            "snapshot_time": self.snapshot_time,
            "entities": [e.to_dict() for e in self.entities],
            "problem": self.problem,
        }


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.()/-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(name: str) -> str:
    """A file or entity name as a problem may show it: itself when plainly a name, else '…'."""
    return name if _SAFE_NAME.fullmatch(name) else "…"


def short_reason(message: str, names: tuple[str, ...] = ()) -> str:
    """A cdm error message fit to show: every quoted part but the plain `names` blanked (quoted
    parts can be values from the file), no control characters, at most 200 characters."""

    def keep(match: re.Match[str]) -> str:
        inner = match.group(1) if match.group(1) is not None else match.group(2)
        return f"'{inner}'" if inner in names and shown(inner) == inner else "'…'"

    text = _CONTROL.sub(" ", _QUOTED.sub(keep, message))
    return text if len(text) <= 200 else text[:199] + "…"


def _joined(problems: list[str]) -> str | None:
    if not problems:
        return None
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return "; ".join(problems[:MAX_PROBLEMS_SHOWN]) + (f"; and {more} more" if more > 0 else "")


# -- describing one folder --------------------------------------------------------------------------
@dataclass
class _Reading:
    """One folder being described: its listing, what its metadata reads may still take."""

    source: BlobSource
    folder: str
    listing: FolderListing
    budget: Budget
    bytes_left: int
    problems: list[str] = field(default_factory=list)

    def read(self, name: str) -> bytes | None:
        """A metadata file of the folder; None (and a problem) when it is too big for the folder."""
        size = self.listing.sizes[name]
        if size > self.bytes_left:
            self.problems.append(f"'{shown(name)}' not read: the folder's metadata is over {self.bytes_left + size} bytes")
            return None
        self.budget.take_download(size)
        self.bytes_left -= size
        return self.source.read_metadata(f"{self.folder}/{name}", size)

    def partitions(self, entity: str, refs: tuple[cdm.PartitionRef, ...]) -> tuple[int, int]:
        """How many of the partitions are in the folder, and their bytes (sizes from the listing)."""
        found: set[str] = set()
        missing = 0
        for ref in refs:
            blob = cdm.resolve_location(ref.location, self.listing.sizes)
            if blob is None:
                missing += 1
            elif blob in found:
                self.problems.append(f"entity '{shown(entity)}' lists the same partition file twice")
            else:
                found.add(blob)
        if missing and self.listing.complete:
            self.problems.append(f"entity '{shown(entity)}': {missing} of {len(refs)} partition(s) are not in storage")
        return len(found), sum(self.listing.sizes[b] for b in found)


def describe_folder(source: BlobSource, folder: str, limits: Limits, budget: Budget) -> FolderInfo:
    """The folder's exports as its metadata says (see the module's docstring). Raises OutOfBudget
    when the request's budget cannot finish it; a folder's own trouble is its `problem`."""
    pages = min(limits.folder_pages, budget.pages)
    if pages < 1:
        raise OutOfBudget
    listing = source.list_folder(folder, pages, limits.page_size)
    budget.take_pages(listing.pages)
    if not listing.complete:
        if listing.pages < limits.folder_pages or budget.pages < limits.folder_pages:
            raise OutOfBudget
        # Past the folder's cap: its metadata may sort after the files listed ("model.json" comes
        # after "Segment/..."), so the files directly in it are listed too.
        direct = source.list_folder(folder, limits.folder_pages, limits.page_size, direct=True)
        budget.take_pages(direct.pages)
        listing = FolderListing({**listing.sizes, **direct.sizes}, {**listing.modified, **direct.modified}, False, listing.pages)
    metadata = BlobSource.metadata_file(listing.sizes)
    if metadata is None:
        return FolderInfo(folder, None, None, problem="no model.json or *.manifest.cdm.json in the folder")
    reading = _Reading(source, folder, listing, budget, limits.folder_bytes)
    if not listing.complete:
        files = limits.folder_pages * limits.page_size
        reading.problems.append(f"the folder holds over {files} files: partitions and bytes count the first {files} only")
    entities = _entities(reading, metadata, limits)
    return FolderInfo(folder, metadata, listing.modified.get(metadata), tuple(entities), _joined(reading.problems))


def _entities(reading: _Reading, metadata: str, limits: Limits) -> list[Entity]:
    manifest = metadata != MODEL_JSON
    try:
        data = reading.read(metadata)
        entries = [] if data is None else cdm.metadata_entities(data, metadata)
    except ExportError as exc:
        if exc.code == "storage_unavailable":
            raise
        reading.problems.append(short_reason(exc.message, (metadata,)))
        return []
    if len(entries) > limits.entities:
        reading.problems.append(f"{len(entries) - limits.entities} more entities not described (at most {limits.entities} are)")
    described: list[Entity | None] = []
    for index, entry in enumerate(entries[: limits.entities], 1):
        name = cdm.entity_name(entry, manifest)
        if name is None:
            reading.problems.append(f"entity {index} in {shown(metadata)} has no name")
            continue
        try:
            described.append(
                _manifest_entity(reading, entry, name, metadata) if manifest else _model_entity(reading, entry, name)
            )
        except ExportError as exc:
            if exc.code == "storage_unavailable":
                raise
            reading.problems.append(short_reason(exc.message, (name, metadata)))
    return [e for e in described if e is not None]


def _model_entity(reading: _Reading, entry: dict[str, Any], name: str) -> Entity:
    schema = cdm.model_entity(entry, name)
    columns = tuple(zip(schema.columns, cdm.model_entity_types(entry), strict=True))
    return Entity(name, columns, *reading.partitions(name, schema.partitions))


def _manifest_entity(reading: _Reading, entry: dict[str, Any], name: str, metadata: str) -> Entity | None:
    entity = cdm.manifest_entity(entry, name, metadata)
    document = entity.document_path
    if document not in reading.listing.sizes:
        reading.problems.append(f"entity '{shown(name)}': its entity document '{shown(document)}' is not in the folder")
        return None
    data = reading.read(document)
    if data is None:
        return None
    names = cdm.parse_entity_document(data, entity.definition_name, document)
    types = cdm.entity_document_types(data, entity.definition_name, document)
    columns = tuple(zip(names, types, strict=True))
    return Entity(name, columns, *reading.partitions(name, entity.partitions))


def discover(
    source: BlobSource, limit: int, continuation: str | None = None, limits: Limits = Limits()
) -> tuple[list[FolderInfo], str | None]:
    """Up to `limit` export folders, from where `continuation` says (None: the start), and the
    token to go on with (None: every folder was listed). A token this did not give is a 400."""
    try:
        walk = Walk.resume(continuation) if continuation else Walk()
    except ValueError:
        raise ExportError("bad_request", BAD_TOKEN) from None
    budget = Budget.of(limits)
    found: list[FolderInfo] = []
    try:
        while len(found) < limit:
            folder = walk.next_folder(source, limits, budget)
            if folder is None:
                break
            found.append(describe_folder(source, folder, limits, budget))
            walk.leave()
    except OutOfBudget:
        pass
    return found, walk.token()
