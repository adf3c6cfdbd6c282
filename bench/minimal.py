"""The floor: the least a streaming export must do, and nothing more. Read the same blobs, parse
the CSV, build the same contact dicts, custom fields included (skipping rows with no address,
repeats and lifetime values that are not numbers, so the same contacts go out), encode JSON
with the fastest encoder at hand (orjson) and send the same capped chunks, one after another.
No validation beyond that, no spill, no delta, no job polling, no reports. It knows the bench's
data (bench/data.py) and nothing of the exporter's code.

    python -m bench.minimal FOLDER LIST_ID '{"loyalty_tier": "e1_T", ...}'

Prints a JSON line."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import requests
from azure.storage.blob import BlobServiceClient

from bench.data import ADDRESS, CITY, COUNTRY, EMAIL, FIRST_NAME, LAST_NAME, POSTCODE, SINCE, STATE, TIER, VALUE
from bench.memory import peak_rss_mb

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAX_CONTACTS, MAX_BYTES = 30_000, 6_000_000
FIELDS = {
    "first_name": FIRST_NAME,
    "last_name": LAST_NAME,
    "address_line_1": ADDRESS,
    "city": CITY,
    "state_province_region": STATE,
    "postal_code": POSTCODE,
    "country": COUNTRY,
}


def member_since(text: str) -> str:
    """ISO 8601 at midnight UTC, as SendGrid's JSON API takes Date fields, from the two forms
    bench/data.py writes (ISO date-time, US-culture date)."""
    if "/" in text:
        month, day, year = text.split(" ", 1)[0].split("/")
        return f"{year}-{int(month):02d}-{int(day):02d}T00:00:00Z"
    return datetime.fromisoformat(text.replace("Z", "+00:00")).strftime("%Y-%m-%dT00:00:00Z")


class Chunks(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.view = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self.view:
            try:
                self.view = memoryview(next(self.chunks))
            except StopIteration:
                return 0
        target = memoryview(buffer)
        n = min(len(target), len(self.view))
        target[:n], self.view = self.view[:n], self.view[n:]
        return n


def main() -> None:
    folder, list_id, ids = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    tier_id, value_id, since_id = ids["loyalty_tier"], ids["lifetime_value"], ids["member_since"]
    service = BlobServiceClient.from_connection_string(
        os.environ["SOURCE_STORAGE_CONNECTION_STRING"], max_single_get_size=4 << 20, max_chunk_get_size=4 << 20
    )
    container = service.get_container_client(os.environ["SOURCE_CONTAINER"])
    session = requests.Session()
    url = os.environ["SENDGRID_API_BASE_URL"] + "/v3/marketing/contacts"
    headers = {"Authorization": "Bearer " + os.environ["SENDGRID_API_KEY"], "Content-Type": "application/json"}
    head, tail = b'{"list_ids":["' + list_id.encode() + b'"],"contacts":[', b"]}"
    started = time.perf_counter()
    parts: list[bytes] = []
    size = len(head) + len(tail)
    seen: set[str] = set()
    requests_sent = bytes_sent = 0

    def send() -> None:
        nonlocal parts, size, requests_sent, bytes_sent
        body = head + b",".join(parts) + tail
        session.put(url, data=body, headers=headers, timeout=120).raise_for_status()
        requests_sent, bytes_sent = requests_sent + 1, bytes_sent + len(body)
        parts, size = [], len(head) + len(tail)

    blobs = sorted(b.name for b in container.list_blobs(name_starts_with=folder + "/") if b.name.endswith(".csv"))
    for name in blobs:
        raw = io.BufferedReader(Chunks(container.download_blob(name, max_concurrency=1).chunks()), 64 * 1024)
        for row in csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")):
            email = row[EMAIL].strip().lower()
            if "@" not in email or email in seen:
                continue
            text = row[VALUE].strip()
            try:
                value = (int(text) if text.isdigit() else float(text)) if text else None
            except ValueError:
                continue
            seen.add(email)
            contact: dict[str, Any] = {"email": email}
            for field, index in FIELDS.items():
                if row[index]:
                    contact[field] = row[index].strip()
            custom: dict[str, Any] = {}
            if row[TIER]:
                custom[tier_id] = row[TIER].strip()
            if value is not None:
                custom[value_id] = value
            if row[SINCE]:
                custom[since_id] = member_since(row[SINCE].strip())
            if custom:
                contact["custom_fields"] = custom
            encoded = b"".join((orjson.dumps(contact), b""))  # a right-sized copy: orjson's own holds 4 KB
            if parts and (len(parts) >= MAX_CONTACTS or size + len(encoded) + 1 > MAX_BYTES):
                send()
            parts.append(encoded)
            size += len(encoded) + 1
    if parts:
        send()
    elapsed = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {"elapsed": elapsed, "peak_rss_mb": peak_mb, "requests": requests_sent, "bytes": bytes_sent, "contacts": len(seen)}
        )
    )


if __name__ == "__main__":
    main()
