"""The floor: the least a streaming export must do, and nothing more. Read the same blobs, parse
the CSV, build the same contact dicts (skipping rows with no address and repeats, so the same
contacts go out), encode JSON and send the same capped chunks, one after another. No
validation beyond that, no spill, no delta, no job polling, no reports. Prints a JSON line."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time

import requests
from azure.storage.blob import BlobServiceClient

from bench.data import EMAIL
from bench.memory import peak_rss_mb

MAX_CONTACTS, MAX_BYTES = 30_000, 6_000_000
FIELDS = {"first_name": 1, "last_name": 2, "city": 7, "state_province_region": 8, "postal_code": 9, "country": 10}


class Chunks(io.RawIOBase):
    def __init__(self, chunks):  # noqa: ANN001
        self.chunks, self.view = chunks, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):  # noqa: ANN001
        while not self.view:
            try:
                self.view = memoryview(next(self.chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.view))
        buffer[:n], self.view = self.view[:n], self.view[n:]
        return n


def main() -> None:
    folder, list_id = sys.argv[1], sys.argv[2]
    service = BlobServiceClient.from_connection_string(
        os.environ["SOURCE_STORAGE_CONNECTION_STRING"], max_single_get_size=4 << 20, max_chunk_get_size=4 << 20)
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
            seen.add(email)
            contact = {"email": email}
            for field, index in FIELDS.items():
                if row[index]:
                    contact[field] = row[index].strip()
            encoded = json.dumps(contact, ensure_ascii=False, separators=(",", ":")).encode()
            if parts and (len(parts) >= MAX_CONTACTS or size + len(encoded) + 1 > MAX_BYTES):
                send()
            parts.append(encoded)
            size += len(encoded) + 1
    if parts:
        send()
    elapsed = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(json.dumps({"elapsed": elapsed, "peak_rss_mb": peak_mb, "requests": requests_sent, "bytes": bytes_sent,
                      "contacts": len(seen)}))


if __name__ == "__main__":
    main()
