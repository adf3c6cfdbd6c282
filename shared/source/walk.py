"""The walk of the source container's folders that finds the Customer Insights exports (GET
/api/sources; shared/source/discovery.py describes what it finds), the budget of one request,
and the continuation token that carries the walk from one request to the next.

The walk lists one folder at a time, a "/"-delimited List Blobs page at a time, depth first in
the order Storage lists names. A folder holding model.json or a *.manifest.cdm.json directly is
an export: the walk stops there (`next_folder`), and leaves it once it is described (`leave`)
without going into it (its sub-folders hold its partitions). The container itself is never an
export, and the walk goes at most MAX_DEPTH folders deep.

Its place is the folder it is in and, for that folder and each above it, which page of its
listing it is reading (the page's Storage marker) and how many entries of the page it took: the
token is that, as base64url JSON, checked whole when it comes back. A page is listed once per
request (kept while the walk is in that folder); a resumed walk lists its current page again.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from shared.errors import ExportError
from shared.source.blob import MANIFEST_SUFFIX, MODEL_JSON, BlobSource, ListEntry

MAX_DEPTH = 10  # folders below the container (Customer Insights writes exports two deep)
TOKEN_PREFIX = "w1."
# The token travels in a query string, and the Functions host has refused query strings over
# 2,048 characters (Azure/azure-functions-host#3023). The walk's place is far shorter (a few
# hundred characters with Storage markers) unless folder names are very long at every level.
MAX_TOKEN_CHARS = 1800
BAD_TOKEN = "'continuation' is not a token this endpoint gave; start again without it"


@dataclass(frozen=True)
class Limits:
    page_size: int = 5000  # names per List Blobs page (Azure's maximum)
    request_pages: int = 100  # List Blobs pages per request, the walk's and the folders' together
    request_bytes: int = 32 * 1024 * 1024  # metadata read per request
    request_downloads: int = 300  # metadata files read per request
    folder_pages: int = 4  # a folder with more files is described from the first pages only (and as
    # many of the files directly in it, where its metadata is)
    folder_bytes: int = 8 * 1024 * 1024  # metadata of one folder (its metadata file and entity documents)
    entities: int = 50  # entities described per folder

    def __post_init__(self) -> None:
        # One folder (the walk's page that found it, then the folder) always fits a fresh budget.
        if not (
            self.request_pages >= 1 + 2 * self.folder_pages
            and self.request_bytes >= self.folder_bytes
            and self.request_downloads >= 1 + self.entities
            and 1 <= self.page_size <= 5000
        ):
            raise ValueError("a fresh budget must fit one folder")


class OutOfBudget(Exception):
    """The request's budget is spent: stop, and carry on from the walk's place next time."""


@dataclass
class Budget:
    pages: int
    bytes: int
    downloads: int

    @classmethod
    def of(cls, limits: Limits) -> Budget:
        return cls(limits.request_pages, limits.request_bytes, limits.request_downloads)

    def take_pages(self, count: int) -> None:
        if count > self.pages:
            raise OutOfBudget
        self.pages -= count

    def take_download(self, size: int) -> None:
        if size > self.bytes or self.downloads < 1:
            raise OutOfBudget
        self.bytes -= size
        self.downloads -= 1


def is_metadata(name: str) -> bool:
    """Whether a file name (no folder) is CDM metadata: model.json or a *.manifest.cdm.json."""
    return name == MODEL_JSON or (name.endswith(MANIFEST_SUFFIX) and len(name) > len(MANIFEST_SUFFIX))


@dataclass
class _Frame:
    marker: str | None  # the page of this folder's listing being read (None: the first)
    skip: int  # entries of that page already taken


@dataclass
class Walk:
    """Where the walk is: the folder it is in (`prefix`: "" for the container, else ending in "/")
    and, for that folder and each one above it (outermost first), its listing's page and place."""

    prefix: str = ""
    frames: list[_Frame] = field(default_factory=lambda: [_Frame(None, 0)])
    _pages: dict[int, tuple[str | None, list[ListEntry], str | None]] = field(default_factory=dict, repr=False)

    def next_folder(self, source: BlobSource, limits: Limits, budget: Budget) -> str | None:
        """The next export folder (the walk stays in it: `leave` once it is described), or None
        when the walk is over. Raises OutOfBudget where a page cannot be listed."""
        while self.frames:
            depth = len(self.frames) - 1
            frame = self.frames[-1]
            entries, next_marker = self._page(source, limits, budget, depth, frame.marker)
            if depth and frame.skip == 0 and any(not sub and is_metadata(n.rsplit("/", 1)[-1]) for n, sub in entries):
                return self.prefix[:-1]
            child = next((i for i in range(frame.skip, len(entries)) if entries[i][1]), None)
            if child is not None and depth < MAX_DEPTH:
                frame.skip = child + 1
                self.frames.append(_Frame(None, 0))
                self.prefix = entries[child][0]
            elif next_marker is not None:
                frame.marker, frame.skip = next_marker, 0
            else:
                self.leave()
        return None

    def leave(self) -> None:
        """Out of the folder the walk is in, to the rest of the folder above it."""
        self._pages.pop(len(self.frames) - 1, None)
        self.frames.pop()
        self.prefix = self.prefix[: self.prefix[:-1].rfind("/") + 1]

    def _page(
        self, source: BlobSource, limits: Limits, budget: Budget, depth: int, marker: str | None
    ) -> tuple[list[ListEntry], str | None]:
        cached = self._pages.get(depth)
        if cached is not None and cached[0] == marker:
            return cached[1], cached[2]
        budget.take_pages(1)
        entries, next_marker = source.list_directory(self.prefix, marker, limits.page_size)
        self._pages[depth] = (marker, entries, next_marker)
        return entries, next_marker

    # -- the continuation token --
    def token(self) -> str | None:
        if not self.frames:
            return None
        state = {"p": self.prefix, "f": [[f.marker, f.skip] for f in self.frames]}
        text = json.dumps(state, separators=(",", ":"), ensure_ascii=True).encode()
        token = TOKEN_PREFIX + base64.urlsafe_b64encode(text).decode().rstrip("=")
        if len(token) > MAX_TOKEN_CHARS:
            raise ExportError(
                "source_invalid", "the container's folder names are too long to page through (a token would be too long)"
            )
        return token

    @classmethod
    def resume(cls, token: str) -> Walk:
        """The walk a token names; ValueError for anything `token` did not write."""
        if len(token) > MAX_TOKEN_CHARS or not token.startswith(TOKEN_PREFIX):
            raise ValueError("not a walk token")
        body = token[len(TOKEN_PREFIX) :]
        try:
            state = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, ValueError, RecursionError):
            raise ValueError("not a walk token") from None
        if not isinstance(state, dict) or set(state) != {"p", "f"}:
            raise ValueError("not a walk token")
        prefix, frames = state["p"], state["f"]
        if not isinstance(prefix, str) or not isinstance(frames, list) or not 1 <= len(frames) <= MAX_DEPTH + 1:
            raise ValueError("not a walk token")
        if prefix.count("/") != len(frames) - 1 or (prefix and not prefix.endswith("/")) or len(prefix) > 1024:
            raise ValueError("not a walk token")
        walk = cls(prefix, [])
        for frame in frames:
            if not (isinstance(frame, list) and len(frame) == 2):
                raise ValueError("not a walk token")
            marker, skip = frame
            if not (marker is None or (isinstance(marker, str) and 0 < len(marker) <= 4096)):
                raise ValueError("not a walk token")
            if isinstance(skip, bool) or not isinstance(skip, int) or not 0 <= skip <= 5000:
                raise ValueError("not a walk token")
            walk.frames.append(_Frame(marker, skip))
        return walk
