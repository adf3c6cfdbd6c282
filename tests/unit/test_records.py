"""The two ways a partition's CSV records are read give one result: the guarded fast way hands
over to the exact reader before a record could pass the cap, and on anything that does not parse."""

from __future__ import annotations

import io
import random
import tracemalloc
from typing import TextIO

import pytest

from shared.errors import ExportError
from shared.source import cdm
from shared.source.csv_rows import GuardedStream, guarded_records, read_records

COLUMNS = ("A", "B", "C")


class Opener:
    """Opens bytes as a partition is opened, counting the openings."""

    def __init__(self, data: bytes, encoding: str = "utf-8-sig", limit: int | None = None) -> None:
        self.data, self.encoding, self.limit, self.openings = data, encoding, limit, 0

    def __call__(self, guarded: bool) -> tuple[TextIO, list[int] | None]:
        self.openings += 1
        chunks = (self.data[i : i + 1000] for i in range(0, len(self.data), 1000))
        if not guarded:
            return io.TextIOWrapper(io.BytesIO(self.data), encoding=self.encoding, errors="surrogateescape", newline=""), None
        stream = GuardedStream(chunks, self.limit) if self.limit else GuardedStream(chunks)
        text = io.TextIOWrapper(io.BufferedReader(stream, 4096), encoding=self.encoding, errors="surrogateescape", newline="")
        return text, stream.progress


Records = list[tuple[int, list[str]]]  # (record number, values) in order


def both(data: bytes, fmt: cdm.CsvFormat = cdm.CsvFormat(), limit: int | None = None) -> tuple[Records, Records, int]:
    """(what the guarded way yields, what the exact reader yields, openings by the guarded way)."""
    opener = Opener(data, limit=limit)
    fast = [(number, values) for _, number, values in guarded_records(opener, fmt, COLUMNS, "partition 'p1'")]
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="surrogateescape", newline="")
    exact = list(read_records(text, fmt, COLUMNS, "partition 'p1'"))
    return fast, exact, opener.openings


def test_the_guarded_way_reads_what_the_exact_reader_reads_in_one_opening() -> None:
    rng = random.Random(4)
    values = ["a", "", "b c", "d,e", 'say "hi"', "line\nbreak", "crlf\r\nin", "é", "\u2028", "x" * 300]
    for header in (False, True):
        for ending in ("\r\n", "\n", "\r"):
            rows = [[rng.choice(values) for _ in COLUMNS] for _ in range(300)]
            lines = [",".join('"' + v.replace('"', '""') + '"' if set(v) & set(',"\r\n') else v for v in row) for row in rows]
            lines[10:10] = [""]  # a blank line
            text = ("C,A,B" + ending if header else "") + ending.join(lines) + ending
            fast, exact, openings = both(text.encode(), cdm.CsvFormat(header=header))
            assert fast == exact and len(exact) == 300 and openings == 1
            if header:  # the header named the columns in another order: values come back in order
                assert exact[0][1] == [rows[0][1], rows[0][2], rows[0][0]]


def test_a_record_that_may_pass_the_cap_hands_over_to_the_exact_reader() -> None:
    data = b"a,b,c\n" * 50 + b"x" * 6000 + b",y,z\n" + b"d,e,f\n" * 50
    fast, exact, openings = both(data, limit=2000)
    assert openings == 2  # the guard stopped the fast way; the exact reader read from the start
    assert fast == exact and exact[50] == (51, ["x" * 6000, "y", "z"])  # under the real cap: a row


def test_the_exact_reader_decides_an_oversized_record_after_the_hand_over() -> None:
    data = b"a,b,c\n" + b"x" * (3 * 1024 * 1024) + b",y,z\n" + b"d,e,f\n"
    fast, exact, openings = both(data)
    assert fast == exact == [(1, ["a", "b", "c"]), (2, []), (3, ["d", "e", "f"])] and openings == 2


def test_a_broken_record_is_refused_with_the_exact_readers_words() -> None:
    data = b"a,b,c\n" * 20 + b'a,"b,c\n' + b"a,b,c\n" * 20
    with pytest.raises(ExportError) as fast:
        list(guarded_records(Opener(data), cdm.CsvFormat(), COLUMNS, "partition 'p1'"))
    assert fast.value.code == "source_invalid" and "partition 'p1'" in fast.value.message
    assert "line 21" in fast.value.message


def test_a_30_mb_line_costs_the_guarded_way_bounded_memory() -> None:
    data = b"a,b,c\r\n" + b"y" * (30 * 1024 * 1024) + b",z,w\r\nc,d,e\r\n"
    opener = Opener(data)
    tracemalloc.start()
    try:
        rows = [(number, values) for _, number, values in guarded_records(opener, cdm.CsvFormat(), COLUMNS)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [number for number, _ in rows] == [1, 2, 3] and rows[2][1] == ["c", "d", "e"]
    assert peak < 8 * 1024 * 1024  # a few times the 1 MiB record cap, not the line
