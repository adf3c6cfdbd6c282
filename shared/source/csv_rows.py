"""The CSV records of one partition, read strictly as its CDM settings say, in bounded memory.
Pure: it reads the text (or byte) streams it is handed.

Two ways, one result. `read_records` is the exact reader: it pulls each physical line itself
(`_Lines`), so no record may pass MAX_RECORD_CHARS; a longer one is skipped as a rejected row
when the next record can be found for sure, else the partition is refused (`source_invalid`,
naming partition and line), never guessed at, so a broken snapshot cannot look like a smaller
segment. `guarded_records` is the fast way for whole partitions: csv.reader reads the text
stream directly (no Python call per line, ~0.4 us a row less), while a `GuardedStream` under it
counts the bytes read since a record last ended. Before a record could pass the cap, and on
anything that does not parse, it hands over to the exact reader from the partition's start
(re-opened), which skips the records already given and says exactly what is wrong.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from shared.source import cdm

# One CSV record (all its lines) may hold at most this many characters; mapping rejects any value
# over 4,096 characters anyway. A longer record is skipped as a rejected row when the reader can
# find the next record for sure, else the partition is refused. Memory stays near this bound.
MAX_RECORD_CHARS = 1024 * 1024
csv.field_size_limit(MAX_RECORD_CHARS + 1)  # never the binding limit: records are capped first
BUFFER_BYTES = 64 * 1024  # the byte buffer under the text stream
# Bytes read ahead of the parser, at most: the byte buffer and a text chunk of TextIOWrapper's
# (8 KB), with room to spare. A character is at least a byte, so a record over the cap has read
# more than MAX_RECORD_CHARS bytes; the guard stops this much before, never after.
READ_AHEAD_BYTES = 4 * BUFFER_BYTES


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
    text: TextIO,
    fmt: cdm.CsvFormat,
    columns: tuple[str, ...],
    what: str = "partition",
    max_record_chars: int = MAX_RECORD_CHARS,
) -> Iterator[tuple[int, list[str]]]:
    """Yield (record number from 1, values in `columns` order) for each data record.

    Blank lines and a header row are not counted; a header naming the columns in another order
    puts values back in `columns` order (any other header is informational). A record over the
    cap comes out as an `OversizedRecord`; anything that does not parse as `fmt` says (an
    unterminated quote, text after a closing quote, undecodable UTF-16) raises source_invalid.
    """
    lines = _Lines(text, '"' if fmt.quoting else None, max_record_chars)
    reader = csv.reader(lines, delimiter=fmt.delimiter, strict=True, quoting=csv.QUOTE_MINIMAL if fmt.quoting else csv.QUOTE_NONE)
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
                raise cdm.invalid(
                    f"{what}: the record at line {lines.record_line} is over {max_record_chars} "
                    "characters and its end cannot be found for sure; nothing was read from it"
                )
            number += 1
            yield number, OversizedRecord()
            continue
        except (csv.Error, UnicodeDecodeError) as exc:
            problem = f"{exc}" if isinstance(exc, csv.Error) else f"not valid {fmt.encoding}"
            raise cdm.invalid(f"{what} is not valid CSV from line {lines.record_line}: {problem}") from None
        if header:
            header = False
            order = _order(values, columns)
            continue
        if not values:
            continue
        number += 1
        if order is not None and len(values) == len(order):
            yield number, [values[i] for i in order]
        else:
            yield number, values


class ChunkStream(io.RawIOBase):
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


class _Unsure(Exception):
    """The fast way cannot vouch for what follows: the exact reader takes over."""


class GuardedStream(ChunkStream):
    """A `ChunkStream` that raises `_Unsure` when more than `limit` bytes were read while no
    record ended: `progress[0]` is the count of records the reader has finished."""

    def __init__(self, chunks: Iterator[bytes], limit: int = MAX_RECORD_CHARS - READ_AHEAD_BYTES) -> None:
        super().__init__(chunks)
        self.progress = [0]
        self._limit, self._seen, self._read, self._mark = limit, 0, 0, 0

    def readinto(self, buffer: Any) -> int:
        if self.progress[0] != self._seen:  # a record ended since the last read, after _mark
            self._seen, self._mark = self.progress[0], self._read
        elif self._read - self._mark > self._limit:
            raise _Unsure
        count = super().readinto(buffer)
        self._read += count
        return count


def guarded_records(
    open_text: Callable[[bool], tuple[TextIO, list[int] | None]],
    fmt: cdm.CsvFormat,
    columns: tuple[str, ...],
    what: str = "partition",
    name: str = "",
) -> Iterator[tuple[str, int, list[str]]]:
    """What `read_records` yields for a partition, each with `name` before it (the source's row
    tuple, made once). `open_text(guarded)` opens the partition: with a GuardedStream under the
    text and its `progress` list (guarded=True), or plainly (False, for the exact reader, from
    the start)."""
    text, progress = open_text(True)
    assert progress is not None
    done = 0
    try:
        with text:
            reader = csv.reader(
                text, delimiter=fmt.delimiter, strict=True, quoting=csv.QUOTE_MINIMAL if fmt.quoting else csv.QUOTE_NONE
            )
            order: list[int] | None = None
            if fmt.header:  # the first record, whatever it holds
                first = next(reader, None)
                progress[0] += 1
                order = None if first is None else _order(first, columns)
            if order is None:  # the usual: values in column order (the loop runs once a row: kept bare)
                for values in reader:
                    progress[0] += 1
                    if values:
                        done += 1
                        yield name, done, values
            else:
                for values in reader:
                    progress[0] += 1
                    if values:
                        done += 1
                        yield name, done, values if len(values) != len(order) else [values[i] for i in order]
        return
    except (_Unsure, csv.Error, UnicodeDecodeError):
        pass
    del text, reader  # and the download piece they hold, before the partition is read again
    exact, _ = open_text(False)
    with exact:
        for number, values in read_records(exact, fmt, columns, what):
            if number > done:
                yield name, number, values


def _order(header: list[str], columns: tuple[str, ...]) -> list[int] | None:
    """Where each column's value is in a row, when a header names the columns in another order."""
    names = [h.strip() for h in header]
    if names != list(columns) and sorted(names) == sorted(columns):
        return [names.index(c) for c in columns]
    return None
