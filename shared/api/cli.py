"""Operator CLI over the same core as the functions, reading the same settings from the
environment:  python -m shared validate | run NAME [--dry-run | --queue] | status NAME

`run` runs inline in this process (the report when it ends); `--queue` puts it on the run queue
instead, for the queue worker (202 and the run's status URL)."""

from __future__ import annotations

import argparse
import logging
import sys

from shared.api import routes
from shared.api.compose import get_app
from shared.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("validate", help="check the settings and list the exports with their problems")
    run = commands.add_parser("run", help="run one export now")
    run.add_argument("name")
    how = run.add_mutually_exclusive_group()
    how.add_argument("--dry-run", action="store_true", help="read, validate and count; send nothing")
    how.add_argument("--queue", action="store_true", help="queue the run for the worker instead of running it here")
    status = commands.add_parser("status", help="print the latest run report")
    status.add_argument("name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        app = get_app()
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "validate":
        response = routes.handle(app, "GET", None, None)
        ok = all(e["valid"] for e in response.body["exports"])
    elif args.command == "run":
        body = b'{"dry_run": true}' if args.dry_run else b"" if args.queue else b'{"wait": true}'
        response = routes.handle(app, "POST", args.name, "run", body)
        ok = response.status in (200, 202)
    else:
        response = routes.handle(app, "GET", args.name, "status")
        ok = response.status == 200
    print(response.json())
    return 0 if ok else 1
