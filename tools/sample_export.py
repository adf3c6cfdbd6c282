"""Writes Customer Insights-shaped segment exports to a blob container (demo, tests, benchmark).

Layout as Customer Insights writes it ("Export segments to Azure Blob Storage"):
  <folder>/model.json
  <folder>/<Segment>/<yyyy>/<MM>/<dd>/<HHmm>/<Segment>_<n>.csv
with partition locations given as absolute URLs of another account, as in real exports.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from azure.storage.blob import ContainerClient

PROFILE_COLUMNS = (
    "CustomerId",
    "FirstName",
    "LastName",
    "EMail",
    "City",
    "State",
    "PostCode",
    "Country",
    "Tier",
    "LifetimeValue",
)
FIRST = ["Ana", "Björn", "Chloé", "Dev", "Eitan", "Fatima", "Giulia", "Hiro", "Ines", "Jonas", "Kwame", "Lena"]
LAST = ["Andersson", "Bianchi", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hughes", "Ivanova", "Jensen"]
CITIES = [
    ("Lisbon", "Lisboa", "1100-148", "Portugal"),
    ("Austin", "TX", "78701", "United States"),
    ("Lyon", "Auvergne-Rhône-Alpes", "69001", "France"),
    ("Osaka", "Osaka", "530-0001", "Japan"),
]


def profile_rows(count: int, *, bad_every: int = 0, seed: int = 7) -> Iterable[list[str]]:
    """Synthetic unified profiles; every `bad_every`-th row is broken in one of a few ways."""
    rng = random.Random(seed)
    previous_email = ""
    for i in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, state, postcode, country = rng.choice(CITIES)
        email = f"{first.lower()}.{last.lower()}.{i}@example.com".replace("é", "e").replace("ö", "o").replace("í", "i")
        row = [
            f"C{i:08d}",
            first,
            last,
            email,
            city,
            state,
            postcode,
            country,
            rng.choice(["Gold", "Silver"]),
            f"{rng.uniform(10, 5000):.2f}",
        ]
        if bad_every and i % bad_every == 0:
            kind = (i // bad_every) % 3
            if kind == 0:
                row[3] = f"not-an-email-{i}"
            elif kind == 1:
                row[3] = ""
            else:
                row[3] = previous_email.upper()  # the same person again, in other letter case
        previous_email = email
        yield row


# A second segment of the same export, with other column names (as another team's segment would
# have them): the demo previews it before any definition names it.
SIGNUP_COLUMNS = (
    "SignupId",
    "EmailAddress",
    "GivenName",
    "Surname",
    "City",
    "Region",
    "ZipCode",
    "CountryOrRegion",
    "LoyaltyTier",
)


def signup_rows(count: int, *, bad_every: int = 0, seed: int = 11) -> Iterable[list[str]]:
    """Synthetic newsletter sign-ups (SIGNUP_COLUMNS); every `bad_every`-th row has no usable email."""
    rng = random.Random(seed)
    for i in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, state, postcode, country = rng.choice(CITIES)
        email = f"{first[0].lower()}{last.lower()}{i}@example.org".replace("í", "i")
        if bad_every and i % bad_every == 0:
            email = "" if (i // bad_every) % 2 else f"{first.lower()} at example.org"
        yield [f"S{i:07d}", email, first, last, city, state, postcode, country, rng.choice(["Gold", "Silver", "Bronze"])]


def csv_bytes(rows: Iterable[Sequence[str]], header: Sequence[str] | None = None, newline: str = "\r\n") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def model_json(segment: str, columns: Sequence[str], locations: Sequence[str], *, header: bool = False) -> bytes:
    return model_json_of([(segment, columns, locations)], header=header)


def model_json_of(entities: Sequence[tuple[str, Sequence[str], Sequence[str]]], *, header: bool = False) -> bytes:
    """A model.json listing each (segment, columns, partition locations) as an entity."""
    listed: list[dict[str, Any]] = []
    for segment, columns, locations in entities:
        partitions: list[dict[str, Any]] = []
        for n, location in enumerate(locations, start=1):
            partition: dict[str, Any] = {"name": f"{segment}_{n}", "location": location, "refreshTime": "2026-11-28T02:00:00Z"}
            if header:
                partition["fileFormatSettings"] = {
                    "$type": "CsvFormatSettings",
                    "columnHeaders": True,
                    "delimiter": ",",
                    "quoteStyle": "QuoteStyle.Csv",
                }
            partitions.append(partition)
        listed.append(
            {
                "$type": "LocalEntity",
                "name": segment,
                "attributes": [{"name": c, "dataType": "string"} for c in columns],
                "partitions": partitions,
            }
        )
    model = {"name": "SendGridExport", "version": "1.0", "entities": listed}
    return json.dumps(model, indent=2).encode()


def write_export(
    container: ContainerClient,
    folder: str,
    segment: str,
    partitions: Sequence[bytes],
    columns: Sequence[str] = PROFILE_COLUMNS,
    *,
    header: bool = False,
    when: datetime | None = None,
) -> list[str]:
    """Upload partitions and a model.json that lists them; returns the partition blob names."""
    return write_segments(container, folder, [(segment, partitions, columns)], header=header, when=when)[segment]


def write_segments(
    container: ContainerClient,
    folder: str,
    segments: Sequence[tuple[str, Sequence[bytes], Sequence[str]]],
    *,
    header: bool = False,
    when: datetime | None = None,
) -> dict[str, list[str]]:
    """Upload several segments of one export, (segment, partitions, columns) each, and one
    model.json that lists them all; returns each segment's partition blob names."""
    when = when or datetime.now(UTC)
    stamp = when.strftime("%Y/%m/%d/%H%M")
    written: dict[str, list[str]] = {}
    entities: list[tuple[str, Sequence[str], Sequence[str]]] = []
    for segment, partitions, columns in segments:
        names, locations = [], []
        for n, data in enumerate(partitions, start=1):
            relative = f"{segment}/{stamp}/{segment}_{n}.csv"
            container.upload_blob(f"{folder}/{relative}", data, overwrite=True)
            names.append(f"{folder}/{relative}")
            # Real exports point at the account Customer Insights wrote to, with :443 and a snapshot.
            locations.append(
                f"https://ciexports.blob.core.windows.net:443/{container.container_name}/"
                f"{folder}/{relative}?snapshot={when.strftime('%Y-%m-%dT%H%%3A%M%%3A00Z')}"
            )
        written[segment] = names
        entities.append((segment, columns, locations))
    container.upload_blob(f"{folder}/model.json", model_json_of(entities, header=header), overwrite=True)
    return written
