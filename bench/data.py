"""Synthetic Customer Insights exports of unified profiles, with realistic column widths."""

from __future__ import annotations

import csv
import io
import random
import unicodedata
import uuid
from collections.abc import Iterator

from azure.storage.blob import ContainerClient

from tools.sample_export import write_export

COLUMNS = (
    "CustomerId", "FirstName", "LastName", "FullName", "EMail", "Phone", "Address1", "City", "State",
    "PostCode", "Country", "BirthDate", "Gender", "Tier", "LifetimeValue", "LastPurchaseDate", "PreferredStore",
)
EMAIL = 4
FIRST = ["Ana", "Björn", "Chloé", "Devendra", "Eitan", "Fatima", "Giulia", "Hiroshi", "Inês", "Jonas", "Kwame",
         "Lena", "María José", "Nikolai", "Olusegun", "Priya"]
LAST = ["Andersson", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "García López", "Hughes", "Ivanova",
        "Jensen", "Kowalczyk", "Nakamura", "O'Connor", "Papadopoulos"]
PLACES = [("Lisboa", "Lisboa", "1100-148", "Portugal"), ("Austin", "TX", "78701", "United States"),
          ("Lyon", "Auvergne-Rhône-Alpes", "69001", "France"), ("Osaka", "Osaka", "530-0001", "Japan"),
          ("München", "Bayern", "80331", "Germany"), ("São Paulo", "SP", "01310-100", "Brazil")]
BAD_EVERY = 33  # about 3% bad rows: no "@", an empty email, or the previous person again


def profiles(count: int, seed: int = 11) -> Iterator[list[str]]:
    rng = random.Random(seed)
    previous = ""
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, state, postcode, country = rng.choice(PLACES)
        # Names keep their accents; addresses, like most real ones, are ASCII.
        local = f"{first.split()[0]}.{last.split()[0]}.{i}".lower()
        email = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode() + "@example-mail.com"
        row = [str(uuid.UUID(int=rng.getrandbits(128))), first, last, f"{first} {last}", email,
               f"+1 555 {rng.randrange(10**6, 10**7)}", f"{rng.randrange(1, 999)} {rng.choice(LAST)} Street",
               city, state, postcode, country, f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
               rng.choice(["F", "M", "X"]), rng.choice(["Gold", "Silver", "Bronze"]), f"{rng.uniform(10, 9000):.2f}",
               f"2026-0{rng.randrange(1, 9)}-2{rng.randrange(0, 9)}T10:1{rng.randrange(0, 9)}:00Z",
               f"Store {rng.randrange(1, 400)}"]
        if i % BAD_EVERY == BAD_EVERY - 1:
            row[EMAIL] = ["not-an-email", "", previous][(i // BAD_EVERY) % 3]
        previous = email
        yield row


def write(container: ContainerClient, folder: str, segment: str, count: int, rows_per_partition: int = 50_000) -> int:
    """Upload `count` profiles as headerless partitions; returns the bytes written."""
    partitions, buffer, total, size = [], io.StringIO(), 0, 0
    writer = csv.writer(buffer, lineterminator="\r\n")
    for n, row in enumerate(profiles(count), start=1):
        writer.writerow(row)
        if n % rows_per_partition == 0 or n == count:
            data = buffer.getvalue().encode()
            partitions.append(data)
            size += len(data)
            buffer.seek(0)
            buffer.truncate()
            total = n
    write_export(container, folder, segment, partitions, COLUMNS)
    del partitions
    return size if total else 0
