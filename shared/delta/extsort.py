"""The external sort of a run's key lines: sorted runs of bounded size (on disk, but for the last
one, kept in memory), merged a batch at a time. Memory is bounded whatever the segment's size;
the per-line work is C's (readlines, list.sort, join), not Python's.

A merged batch is every line, from every run, up to the smallest last line read so far from any
run: sorted stretches laid end to end, which list.sort (Timsort) merges in C at a fraction of
what heapq.merge costs a line in Python.
"""

from __future__ import annotations

import bisect
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from itertools import chain, islice
from pathlib import Path
from typing import BinaryIO, cast

# Lines sorted in memory at a time, by size (from a file) or count (from any other iterable): a
# key line is ~85 bytes, ~125 with its object, so a run holds ~13 MB however large the segment.
# (Twice that measured no faster once merging reads little at a time, see MERGE_BYTES.)
RUN_BYTES = 8 << 20
LINES_PER_RUN = 100_000
READ_BYTES = 1 << 20  # read at a time by `pieces`
MERGE_BYTES = 1 << 20  # read at a time from all the runs being merged, together (~2.5x that in RSS)
BATCH_LINES = 8_192  # lines joined into one write of a run file

Run = Path | list[bytes]  # a sorted run: its file, or (the last one) its lines
Runs = list[Run]


def external_sort(lines: Iterable[bytes], workdir: Path, lines_per_run: int = LINES_PER_RUN) -> Iterator[bytes]:
    """Yield newline-terminated lines in byte order, holding at most one run in memory."""
    return chain.from_iterable(merged(sorted_runs(lines, workdir, lines_per_run)))


def sorted_runs(lines: Iterable[bytes], workdir: Path, lines_per_run: int = LINES_PER_RUN, run_bytes: int = RUN_BYTES) -> Runs:
    """The first half: sorted runs of at most `run_bytes` of lines read from a binary file (or
    `lines_per_run` lines of any other iterable), each written to `workdir` but the last one."""
    file = cast(BinaryIO, lines) if hasattr(lines, "readlines") else None
    rest = iter(lines)
    runs: Runs = []
    while True:
        if file is not None:
            batch = file.readlines(run_bytes)
            more = bool(file.peek(1)) if hasattr(file, "peek") else sum(map(len, batch)) >= run_bytes
        else:
            batch = list(islice(rest, lines_per_run))
            more = len(batch) == lines_per_run
        batch.sort()
        if not more:
            return [*runs, batch]  # the last run stays in memory
        runs.append(_write_run(batch, workdir))
        del batch  # before the next one is read: one run in memory at a time


def merged(runs: Runs, merge_bytes: int = MERGE_BYTES) -> Iterator[list[bytes]]:
    """The second half: the lines of the runs in order, a batch of about `merge_bytes` at a
    time. Run files are removed once read to the end."""
    paths = [run for run in runs if isinstance(run, Path)]
    size = max(merge_bytes // max(len(runs), 1), 1)  # read from each run at a time
    with ExitStack() as stack:
        parts = [_parts(run, size, stack) for run in runs]
        heads = [(head, more) for more in parts if (head := next(more, []))]
        while heads:
            bound = min(head[-1] for head, _ in heads)
            batch: list[bytes] = []
            left = []
            for head, more in heads:
                cut = bisect.bisect_right(head, bound)
                batch += head[:cut]
                rest = head[cut:] if cut < len(head) else next(more, [])
                if rest:
                    left.append((rest, more))
            if len(heads) > 1:
                batch.sort()
            yield batch
            heads = left
    for path in paths:
        path.unlink(missing_ok=True)


def _parts(run: Run, size: int, stack: ExitStack) -> Iterator[list[bytes]]:
    """A run's lines, about `size` bytes of them at a time."""
    if isinstance(run, Path):
        read = stack.enter_context(open(run, "rb")).readlines
        return iter(lambda: read(size), [])
    step = max(size // 128, 1)  # lines of ~85 bytes, ~125 with their objects
    return (run[start : start + step] for start in range(0, len(run), step))


def _write_run(lines: list[bytes], workdir: Path) -> Path:
    with tempfile.NamedTemporaryFile("wb", dir=workdir, prefix="run-", suffix=".txt", delete=False) as handle:
        for start in range(0, len(lines), BATCH_LINES):  # joined a batch at a time: writelines costs 3x
            handle.write(b"".join(lines[start : start + BATCH_LINES]))
        return Path(handle.name)


def pieces(stream: BinaryIO, size: int = READ_BYTES) -> Iterator[bytes]:
    """A file's content in blocks of whole lines (the last block ends as the file does)."""
    carry = b""
    while block := stream.read(size):
        end = block.rfind(b"\n") + 1
        if not end:
            carry += block
            continue
        yield carry + block[:end]
        carry = block[end:]
    if carry:
        yield carry
