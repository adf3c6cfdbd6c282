"""One export run, in its own process (for a clean peak RSS): the same path the HTTP function
takes, shared.api.handle over the app built from settings. Prints a JSON line."""

from __future__ import annotations

import json
import sys
import time

from bench.memory import peak_rss_mb
from shared import api
from shared.services import get_app


def main() -> None:
    app = get_app()
    started = time.perf_counter()
    response = api.handle(app, "POST", sys.argv[1], "run", b"")
    elapsed = time.perf_counter() - started
    peak_mb = peak_rss_mb()
    print(json.dumps({"status": response.status, "elapsed": elapsed, "peak_rss_mb": peak_mb, "report": response.body}))


if __name__ == "__main__":
    main()
