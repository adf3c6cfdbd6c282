"""The read loop's CPU, piece by piece, in one process (no Azurite, no sandbox, no threads): the
bench's rows as CSV in memory, parsed by `shared.source.csv_rows.read_records`, mapped, de-duplicated,
encoded, hashed and written as key and spill lines (to memory), as `shared.run.reading.read` does
per row; beside it, what the minimal loop does per row (csv.reader, its own contact building,
orjson). Figures only, to see where a run's CPU goes; `--profile` prints cProfile's top entries.

    python -m bench.hotpath [--profiles 100000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import pstats
import time
from collections.abc import Callable
from typing import Any, TextIO

import orjson

from bench import data
from bench.minimal import FIELDS, member_since
from shared.contacts import packing
from shared.contacts.dedup import EmailSet
from shared.contacts.mapping import ContactMapper
from shared.definitions import parse_definition
from shared.delta import diff
from shared.delta.lines import encode_key, encode_spill
from shared.sendgrid.fields import CustomField
from shared.source.cdm import CsvFormat
from shared.source.csv_rows import BUFFER_BYTES, GuardedStream, guarded_records, read_records

LIST_ID = "3f1c5a7e-9b2d-4e6f-8a1c-2b3d4e5f6a7b"


def csv_bytes(count: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in data.profiles(count):
        writer.writerow(row)
    return buffer.getvalue().encode()


def mapper() -> ContactMapper:
    definition = parse_definition(
        {
            "name": "bench",
            "source_folder": "f",
            "segment": "S",
            "list_ids": [LIST_ID],
            "privacy_consent": True,
            "mapping": data.MAPPING,
            "custom_fields": data.CUSTOM_FIELDS,
        }
    )
    ids = {"Text": "e1_T", "Number": "e2_N", "Date": "e3_D"}
    fields = {name: CustomField(name, ids[kind], kind) for name, kind in data.FIELD_TYPES.items()}
    return ContactMapper(definition, data.COLUMNS, fields)


def text(raw: bytes) -> io.TextIOWrapper:
    return io.TextIOWrapper(
        io.BufferedReader(io.BytesIO(raw), 64 * 1024), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )


def opener(raw: bytes) -> Callable[[bool], tuple[TextIO, list[int] | None]]:
    """Opens the CSV as `BlobSource` opens a partition, for `guarded_records`."""

    def open_text(guarded: bool) -> tuple[TextIO, list[int] | None]:
        stream = GuardedStream(iter([raw]))
        return io.TextIOWrapper(
            io.BufferedReader(stream, BUFFER_BYTES), encoding="utf-8-sig", errors="surrogateescape", newline=""
        ), stream.progress

    return open_text


def export_loop(raw: bytes, rows: int) -> int:
    """What reading.read does per row, minus the sink and the reject log."""
    to_map, encode, contact_hash = mapper().map, packing.encode_contact, diff.contact_hash
    first_time = EmailSet(expected=rows).first_time
    lists = diff.lists_suffix([LIST_ID])
    keys, spill = io.BytesIO(), io.BytesIO()
    write_key, write_spill = keys.write, spill.write
    valid = 0
    for _, number, values in guarded_records(opener(raw), CsvFormat(), data.COLUMNS, "partition", "p1"):
        mapped = to_map(values)
        if type(mapped) is not dict or not first_time(mapped["email"]):
            continue
        encoded = encode(mapped)
        write_key(encode_key(mapped["email"], contact_hash(encoded, lists), valid, "p1", number))
        write_spill(encode_spill("p1", number, encoded))
        valid += 1
    return valid


def minimal_loop(raw: bytes, rows: int) -> int:
    """bench/minimal.py's loop, without its requests."""
    seen: set[str] = set()
    for row in csv.reader(text(raw)):
        email = row[data.EMAIL].strip().lower()
        if "@" not in email or email in seen:
            continue
        value_text = row[data.VALUE].strip()
        try:
            value = (int(value_text) if value_text.isdigit() else float(value_text)) if value_text else None
        except ValueError:
            continue
        seen.add(email)
        contact: dict[str, Any] = {"email": email}
        for field, index in FIELDS.items():
            if row[index]:
                contact[field] = row[index].strip()
        custom: dict[str, Any] = {}
        if row[data.TIER]:
            custom["e1_T"] = row[data.TIER].strip()
        if value is not None:
            custom["e2_N"] = value
        if row[data.SINCE]:
            custom["e3_D"] = member_since(row[data.SINCE].strip())
        if custom:
            contact["custom_fields"] = custom
        b"".join((orjson.dumps(contact), b""))
    return len(seen)


def parse_exact(raw: bytes, rows: int) -> int:
    return sum(1 for _ in read_records(text(raw), CsvFormat(), data.COLUMNS, "partition"))


def parse_guarded(raw: bytes, rows: int) -> int:
    return sum(1 for _ in guarded_records(opener(raw), CsvFormat(), data.COLUMNS, "partition", "p1"))


def csv_only(raw: bytes, rows: int) -> int:
    return sum(1 for _ in csv.reader(text(raw)))


def best(function: Callable[[bytes, int], int], raw: bytes, rows: int, repeats: int) -> tuple[float, int]:
    times, result = [], 0
    for _ in range(repeats):
        started = time.process_time()
        result = function(raw, rows)
        times.append(time.process_time() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    raw = csv_bytes(args.profiles)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(export_loop, raw, args.profiles)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
        return
    for name, function in (
        ("csv.reader alone", csv_only),
        ("read_records (exact)", parse_exact),
        ("guarded_records", parse_guarded),
        ("minimal loop", minimal_loop),
        ("export read loop", export_loop),
    ):
        seconds, result = best(function, raw, args.profiles, args.repeats)
        print(f"{name:20} {seconds:6.3f} s CPU  {seconds / args.profiles * 1e6:5.2f} µs a row  ({result:,})")


if __name__ == "__main__":
    main()
