"""telemetry.scrub, what every span goes through on its way out: URL queries cut, addresses masked.

The integration test (test_edges_telemetry_scrub.py) sends a real failing download through the
exporter; these are the shapes of text it must handle that a local run cannot all produce, such
as a DELETE that fails to connect (requests then quotes the URL, `?contact_ids=` included)."""

from __future__ import annotations

import pytest

from shared import telemetry

CASES = [
    (
        "HTTPSConnectionPool(host='api.sendgrid.com', port=443): Max retries exceeded with url: "
        "/v3/marketing/lists/0f9c/contacts?contact_ids=a1,b2,c3 (Caused by SSLError(...))",
        "HTTPSConnectionPool(host='api.sendgrid.com', port=443): Max retries exceeded with url: "
        "/v3/marketing/lists/0f9c/contacts (Caused by SSLError(...))",
    ),
    (
        "403 Client Error: Forbidden for url: https://sg.blob.core.windows.net/errors/j.csv?sv=2020&sig=abc%3D",
        "403 Client Error: Forbidden for url: https://sg.blob.core.windows.net/errors/j.csv",
    ),
    ("'http://user:pw@127.0.0.1:8/x?email=a%40b.c#top'", "'http://127.0.0.1:8/x'"),
    ("email 'first.last+tag@example.co.uk' is not valid", "email '<email>' is not valid"),
    (
        "http://127.0.0.1:10000/devstoreaccount1/state?restype=REDACTED&comp=REDACTED",
        "http://127.0.0.1:10000/devstoreaccount1/state",
    ),
    ('  File "/usr/lib/python3.11/site-packages/requests/adapters.py", line 519, in send', None),
    ("what? no run id", None),
    ("user@example.xn--p1ai", "<email>"),
    ("SendGrid: email 'o'brien@example.com' is not valid", "SendGrid: email '<email>' is not valid"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_scrub_cuts_queries_and_masks_addresses(text: str, expected: str | None) -> None:
    assert telemetry.scrub(text) == (text if expected is None else expected)
