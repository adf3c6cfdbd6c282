"""The run's rejects file: one CSV line per row not sent, with where it was and why.

Written by the reading thread and, for contacts SendGrid refuses, by the sender thread: a lock
keeps lines whole and counts exact. The file may quote profile values (SendGrid's messages quote
the address); it goes to the state container only, never to a log.

Marketers open the file in Excel, and partition names (from model.json) and details are not ours:
every cell that a spreadsheet would take as a formula (starting with = + - @ tab or CR) gets a
leading apostrophe (OWASP, "CSV Injection": https://owasp.org/www-community/attacks/CSV_Injection).
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

from shared.report import RunReport

HEADER = ["partition", "row", "reason", "detail"]
RowRef = tuple[str, int]  # (partition name, row number)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """A value as a cell a spreadsheet shows as text, never runs as a formula."""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class RejectsLog:
    def __init__(self, path: Path, report: RunReport) -> None:
        self.path = path
        self.report = report
        self.lines = 0
        self._lock = threading.Lock()
        self._file = open(path, "w", newline="", encoding="utf-8", errors="surrogateescape")
        self._writer = csv.writer(self._file)
        self._writer.writerow(HEADER)

    def list(self, ref: RowRef, reason: str, detail: str) -> None:
        """A line for a row that is not counted as rejected (a duplicate, an import failure)."""
        with self._lock:
            self._writer.writerow([cell(ref[0]), cell(ref[1]), cell(reason), cell(detail)])
            self.lines += 1

    def reject(self, ref: RowRef, reason: str, detail: str, counted_as: str | None = None) -> None:
        """A rejected row: counted in the report (under `counted_as`, else `reason`) and listed."""
        with self._lock:
            self.report.reject(counted_as or reason)
            self._writer.writerow([cell(ref[0]), cell(ref[1]), cell(reason), cell(detail)])
            self.lines += 1

    def close(self) -> None:
        self._file.close()
