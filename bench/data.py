"""Synthetic Customer Insights exports of unified profiles, shaped like what real definitions send.

Every profile carries what a real definition maps: names, an address line, city/state/postcode/
country and three custom fields, one of each SendGrid type (Text tier, Number lifetime value,
Date member since, written as Customer Insights writes dateTime attributes, some US-culture).
CSV quoting is exercised: addresses with commas, names with doubled quotes, notes with embedded
newlines. About 4% of rows are bad: no "@", an empty email, the previous person again, a lifetime
value that is not a number.
"""

from __future__ import annotations

import csv
import io
import random
import unicodedata
import uuid
from collections.abc import Iterator

from azure.storage.blob import ContainerClient

from tools.sample_export import model_json

COLUMNS = (
    "CustomerId",
    "FirstName",
    "LastName",
    "FullName",
    "EMail",
    "Phone",
    "Address1",
    "City",
    "State",
    "PostCode",
    "Country",
    "BirthDate",
    "Gender",
    "Tier",
    "LifetimeValue",
    "MemberSince",
    "LastPurchaseDate",
    "PreferredStore",
    "Notes",
)
EMAIL, FIRST_NAME, LAST_NAME, ADDRESS, CITY, STATE, POSTCODE, COUNTRY = 4, 1, 2, 6, 7, 8, 9, 10
TIER, VALUE, SINCE = 13, 14, 15
# What the bench's definition maps (reserved fields) and its custom fields (name -> column).
MAPPING = {
    "email": "EMail",
    "first_name": "FirstName",
    "last_name": "LastName",
    "address_line_1": "Address1",
    "city": "City",
    "state_province_region": "State",
    "postal_code": "PostCode",
    "country": "Country",
}
CUSTOM_FIELDS = {"loyalty_tier": "Tier", "lifetime_value": "LifetimeValue", "member_since": "MemberSince"}
FIELD_TYPES = {"loyalty_tier": "Text", "lifetime_value": "Number", "member_since": "Date"}

FIRST = [
    "Ana",
    "Björn",
    "Chloé",
    "Devendra",
    "Eitan",
    "Fatima",
    "Giulia",
    "Hiroshi",
    "Inês",
    "Jonas",
    "Kwame",
    "Lena",
    "María José",
    "Nikolai",
    "Olusegun",
    "Priya",
    'Robert "Bob"',
    "Siobhán",
    "Zoë",
]
LAST = [
    "Andersson",
    "Bianchi",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "García López",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Kowalczyk",
    "Nakamura",
    "O'Connor",
    "Papadopoulos",
    "Smith, Jr.",
]
PLACES = [
    ("Lisboa", "Lisboa", "1100-148", "Portugal"),
    ("Austin", "TX", "78701", "United States"),
    ("Lyon", "Auvergne-Rhône-Alpes", "69001", "France"),
    ("Osaka", "Osaka", "530-0001", "Japan"),
    ("München", "Bayern", "80331", "Germany"),
    ("São Paulo", "SP", "01310-100", "Brazil"),
]
TIERS = ["Gold", "Silver", "Bronze", "Platinum", ""]
BAD_EVERY = 25  # 4% bad rows, four kinds in turn


def _word(name: str) -> str:
    return name.split(maxsplit=1)[0].strip(",").replace("'", "")


def profiles(count: int, seed: int = 11, changed_every: int = 0) -> Iterator[list[str]]:
    """`count` rows; with `changed_every`, every such row has another tier (a later snapshot)."""
    rng = random.Random(seed)
    previous = ""
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, state, postcode, country = rng.choice(PLACES)
        # Names keep their accents; addresses, like most real ones, are ASCII.
        local = f"{_word(first)}.{_word(last)}.{i}".lower()
        email = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode() + "@example-mail.com"
        street = f"{rng.randrange(1, 999)} {rng.choice(LAST).split(',')[0]} Street"
        address = street if i % 5 else f"Apt {rng.randrange(1, 60)}, {street}"  # a comma: quoted
        value = f"{rng.uniform(10, 9000):.2f}" if i % 7 else str(rng.randrange(0, 5000))
        since = rng.randrange(0, 10)
        member_since = (
            f"20{10 + since}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}T00:00:00Z"
            if i % 11
            else f"{rng.randrange(1, 13)}/{rng.randrange(1, 29)}/20{10 + since} 8:30:00 AM"
        )
        notes = "" if i % 9 else f"Prefers email.\nAsked about {rng.choice(['returns', 'sizes', 'delivery'])}"
        tier = rng.choice(TIERS)
        if changed_every and i % changed_every == changed_every // 2:
            tier = "Diamond"
        row = [
            str(uuid.UUID(int=rng.getrandbits(128))),
            first,
            last,
            f"{first} {last}",
            email,
            f"+1 555 {rng.randrange(10**6, 10**7)}",
            address,
            city,
            state,
            postcode,
            country,
            f"19{rng.randrange(40, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
            rng.choice(["F", "M", "X"]),
            tier,
            value,
            member_since,
            f"2026-0{rng.randrange(1, 9)}-2{rng.randrange(0, 9)}T10:1{rng.randrange(0, 9)}:00Z",
            f"Store {rng.randrange(1, 400)}",
            notes,
        ]
        if i % BAD_EVERY == BAD_EVERY - 1:
            kind = (i // BAD_EVERY) % 4
            if kind == 3:
                row[VALUE] = "n/a"
            else:
                row[EMAIL] = ["not-an-email", "", previous][kind]
        previous = email
        yield row


def write(
    container: ContainerClient, folder: str, segment: str, count: int, rows_per_partition: int = 50_000, changed_every: int = 0
) -> int:
    """Upload `count` profiles as headerless partitions (one at a time: flat memory at any
    count) and the model.json listing them; returns the bytes of CSV written."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    locations: list[str] = []
    size = 0

    def upload() -> None:
        nonlocal size
        data = buffer.getvalue().encode()
        relative = f"{segment}/2026/11/28/0200/{segment}_{len(locations) + 1}.csv"
        container.upload_blob(f"{folder}/{relative}", data, overwrite=True)
        # Real exports point at the account Customer Insights wrote to, with :443 and a snapshot.
        locations.append(
            f"https://ciexports.blob.core.windows.net:443/{container.container_name}/{folder}/"
            f"{relative}?snapshot=2026-11-28T02%3A00%3A00Z"
        )
        size += len(data)
        buffer.seek(0)
        buffer.truncate()

    for n, row in enumerate(profiles(count, changed_every=changed_every), start=1):
        writer.writerow(row)
        if n % rows_per_partition == 0:
            upload()
    if count % rows_per_partition:
        upload()
    container.upload_blob(f"{folder}/model.json", model_json(segment, COLUMNS, locations), overwrite=True)
    return size
