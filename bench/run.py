"""`make bench`: writes synthetic exports to Azurite, runs the export (the same code the functions
call) and a minimal streaming loop, each in its own process against a fresh SendGrid sandbox, and
prints the figures: wall time, CPU time (user+sys of the child process, all its threads, from
getrusage(RUSAGE_CHILDREN) deltas) and peak RSS of each, their ratios, the cold start, a delta run
with 1% of profiles changed. Figures only: nothing here passes or fails on time. Azurite and the
sandbox run in processes of their own, so their CPU is in neither figure; on a busy machine the
spread between rounds (printed) says how far to trust the figures.

    python -m bench.run [--profiles 300000] [--small 75000] [--rounds 2] [--profile PATH]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from bench import data
from shared.contacts.packing import minimum_requests
from tools.localstack import start_azurite

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "SG.bench-key"
LIST_ID = "3f1c5a7e-9b2d-4e6f-8a1c-2b3d4e5f6a7b"
SEGMENT = "BenchSegment"


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    # Its own process, so its memory and CPU are not the export's. Jobs end at their first poll:
    # a fast SendGrid, so what is measured is the exporter's waiting, not the sandbox's.
    process = subprocess.Popen(
        [
            sys.executable,
            "tools/sendgrid_sandbox.py",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--list",
            LIST_ID,
            "--job-pending-polls",
            "0",
            "--no-record-bodies",
            *(f"--field={name}:{kind}" for name, kind in data.FIELD_TYPES.items()),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
    return process, url


def field_ids(sandbox_url: str) -> dict[str, str]:
    response = requests.get(
        sandbox_url + "/v3/marketing/field_definitions", headers={"Authorization": "Bearer " + API_KEY}, timeout=10
    )
    response.raise_for_status()
    return {field["name"]: field["id"] for field in response.json()["custom_fields"]}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `python -m args` against a fresh sandbox of its own and return its JSON line, with
    "cpu": the child's user+sys seconds (all threads; counted once the child is waited for, so
    only this child is in the delta). A sandbox holding earlier runs' contacts answers slower
    (its memory grows by every contact sent), which favoured whichever side ran first."""
    sandbox, url = start_sandbox()
    try:
        before = children_cpu()
        result = subprocess.run(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env={**env, "SENDGRID_API_BASE_URL": url},
            capture_output=True,
            text=True,
            check=False,
        )
        cpu = children_cpu() - before
    finally:
        sandbox.terminate()
        sandbox.wait()
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "cpu": cpu}


def cold_start(tries: int = 5) -> float:
    """`import export_http` in a fresh interpreter: the best of a few, in seconds."""
    code = "import time; t = time.perf_counter(); import export_http; print(time.perf_counter() - t)"
    return min(
        float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        for _ in range(tries)
    )


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def main() -> int:  # noqa: PLR0915 (a straight script: write, run, print)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=300_000)
    parser.add_argument("--small", type=int, default=75_000, help="a second, smaller run to compare memory")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each; the fastest counts")
    parser.add_argument("--profile", metavar="PATH", help="then one more export, profiled (bench/export_once.py)")
    parser.add_argument("--changed-every", type=int, default=100, help="the delta run changes every Nth profile")
    args = parser.parse_args()
    print(f"before: {load()}", flush=True)
    # Where PYTHONDONTWRITEBYTECODE is set (this machine sets it), every start would compile the
    # project's own modules again (~50 ms of the export's CPU, less of the minimal loop's):
    # compiled once here, as a deployment's build does, so neither side pays for it on each start.
    for folder in ("shared", "bench", "export_http"):
        compileall.compile_dir(ROOT / folder, quiet=1)
    changed_folder = f"Bench_{args.profiles}_changed/Export"

    with tempfile.TemporaryDirectory(prefix="sg-bench-") as tmp:
        azurite = start_azurite(Path(tmp) / "azurite")
        sandbox, sandbox_url = start_sandbox()  # every sandbox has these field ids (made in --field order)
        try:
            ids = field_ids(sandbox_url)
            sandbox.terminate()
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            container = service.create_container("bench-source")
            for count, folder, every in (
                (args.profiles, f"Bench_{args.profiles}/Export", 0),
                (args.small, f"Bench_{args.small}/Export", 0),
                (args.profiles, changed_folder, args.changed_every),
            ):
                started = time.perf_counter()
                size = data.write(container, folder, SEGMENT, count, changed_every=every)
                print(
                    f"wrote {count:,} profiles ({size / 1e6:.1f} MB of CSV) to {folder} in {time.perf_counter() - started:.1f}s",
                    flush=True,
                )

            def env_for(folder: str, state: str | None = None) -> dict[str, str]:
                definition = {
                    "name": "bench",
                    "source_folder": folder,
                    "segment": SEGMENT,
                    "list_ids": [LIST_ID],
                    "privacy_consent": True,
                    "max_profiles": 10_000_000,
                    "mapping": data.MAPPING,
                    "custom_fields": data.CUSTOM_FIELDS,
                }
                env = {
                    **os.environ,
                    "SOURCE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                    "SOURCE_CONTAINER": "bench-source",
                    "SENDGRID_API_KEY": API_KEY,
                    "EXPORT_DEFINITIONS": json.dumps([definition]),
                    # a fresh state container each run: no delivered record, everything is sent
                    "STATE_CONTAINER": state or f"bench-state-{uuid.uuid4().hex[:10]}",
                }
                env.pop("KEY_VAULT_URL", None)
                return env

            big = f"Bench_{args.profiles}/Export"
            floors: list[dict[str, Any]] = []
            exports: list[dict[str, Any]] = []
            for _ in range(args.rounds):  # alternate, so neither side gets the warmer caches
                floors.append(run_json(["bench.minimal", f"{big}/{SEGMENT}", LIST_ID, json.dumps(ids)], env_for(big)))
                env = env_for(big)
                exports.append(run_json(["bench.export_once", "bench"], env))
                print(
                    f"round {len(exports)}: export {exports[-1]['elapsed']:.2f} s wall, {exports[-1]['cpu']:.2f} s "
                    f"CPU; minimal {floors[-1]['elapsed']:.2f} s wall, {floors[-1]['cpu']:.2f} s CPU",
                    flush=True,
                )
            # The same snapshot again, with the record of the last run: the delta finds nothing to send.
            again = run_json(["bench.export_once", "bench"], env)
            # A later snapshot with 1 profile in `changed_every` changed, against that same record.
            changed = run_json(["bench.export_once", "bench"], env_for(changed_folder, env["STATE_CONTAINER"]))
            small = run_json(["bench.export_once", "bench"], env_for(f"Bench_{args.small}/Export"))
            if args.profile:
                run_json(["bench.export_once", "bench"], {**env_for(big), "BENCH_PROFILE": args.profile})
        finally:
            sandbox.terminate()
            sandbox.wait()
            azurite.stop()
    started_cold = cold_start()

    best = min(exports, key=lambda r: r["elapsed"])
    floor = min(floors, key=lambda r: r["elapsed"])
    cpu, floor_cpu = min(r["cpu"] for r in exports), min(r["cpu"] for r in floors)
    report = best["report"]
    counts = report["counts"]
    if best["status"] != 200 or report["status"] not in ("succeeded", "partial"):
        print(json.dumps(report, indent=2))
        print("bench: the export did not succeed")
        return 1
    if report["status"] != "succeeded":  # the figures stand; what SendGrid's jobs refused is shown
        failed = sum(job.get("failed", 0) for job in report["jobs"])
        print(
            f"!! export status {report['status']}: {failed:,} contacts failed in import jobs "
            f"(first job: {json.dumps(report['jobs'][0].get('results'))})"
        )
    upserts = report["requests"]["upserts"]
    body_bytes = floor["bytes"]
    minimum = minimum_requests(counts["sent"], body_bytes)

    def spread(values: list[float]) -> str:
        return f"{100 * (max(values) / min(values) - 1):.0f}%"

    print()
    print(
        f"profiles                      {args.profiles:,} ({counts['valid']:,} valid, {counts['rejected']:,} rejected, "
        f"{counts['duplicates']:,} duplicates; {len(ids)} custom fields and an address line mapped)"
    )
    if counts["sent"] != floor["contacts"]:
        print(f"!! the export sent {counts['sent']:,} contacts, the minimal loop {floor['contacts']:,}")
    print(
        f"export, end to end            {best['elapsed']:.2f} s wall ({args.profiles / best['elapsed']:,.0f} "
        f"profiles/s), {cpu:.2f} s CPU"
    )
    print(
        f"minimal streaming loop        {floor['elapsed']:.2f} s wall ({args.profiles / floor['elapsed']:,.0f} "
        f"profiles/s), {floor_cpu:.2f} s CPU"
    )
    print(
        f"ratio export / minimal        wall {best['elapsed'] / floor['elapsed']:.2f} (goal <= 1.15), "
        f"CPU {cpu / floor_cpu:.2f} (goal <= 1.4)"
    )
    if best.get("sent_at") is not None:
        print(
            f"  until the last request      {best['sent_at']:.2f} s wall, ratio {best['sent_at'] / floor['elapsed']:.2f} "
            "(where the minimal loop ends); the rest confirms SendGrid's import jobs (the sandbox answers "
            '"pending" once per job) and stores the record'
        )
    print(
        f"spread between {args.rounds} rounds      export wall {spread([r['elapsed'] for r in exports])}, CPU "
        f"{spread([r['cpu'] for r in exports])}; minimal wall {spread([r['elapsed'] for r in floors])}, CPU "
        f"{spread([r['cpu'] for r in floors])} (fastest of each counts)"
    )
    print(
        f"peak RSS at {args.profiles:,}          {best['peak_rss_mb']:.0f} MB  (goal <= 160 at 1,000,000; "
        f"minimal loop {floor['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"peak RSS at {args.small:,}           {small['peak_rss_mb']:.0f} MB  (growth "
        f"{best['peak_rss_mb'] - small['peak_rss_mb']:+.0f} MB; goal <= 30 from 75,000 to 1,000,000)"
    )
    print(
        f"upsert requests               {upserts}  (minimum {minimum}: max(ceil(contacts/30,000), "
        f"ceil(bytes/6,000,000)); goal <= minimum + 1)"
    )
    print(f"bytes per request             {body_bytes / max(floor['requests'], 1):,.0f} (minimal loop, same bodies)")
    print("time per stage (s)            " + ", ".join(f"{k} {v:.2f}" for k, v in report["timings"].items()))
    print(
        "CPU per stage (s)             "
        + ", ".join(f"{k} {v:.2f}" for k, v in best["stage_cpu"].items())
        + f" (of {best['process_cpu']:.2f} in the process)"
    )
    print(
        f"same snapshot again           {again['elapsed']:.2f} s, {again['cpu']:.2f} s CPU, "
        f"{again['report']['requests']['upserts']} upserts ({again['report']['counts']['unchanged']:,} unchanged; "
        f"peak RSS {again['peak_rss_mb']:.0f} MB)"
    )
    changed_counts = changed["report"]["counts"]
    print(
        f"1 in {args.changed_every} profiles changed      {changed['elapsed']:.2f} s, {changed['cpu']:.2f} s CPU "
        f"({changed['elapsed'] / best['elapsed']:.2f} of the first delivery; goal <= 0.8), "
        f"{changed['report']['requests']['upserts']} upserts ({changed_counts.get('sent', 0):,} sent, "
        f"{changed_counts.get('unchanged', 0):,} unchanged), status {changed['report']['status']}"
    )
    print("  its time per stage (s)      " + ", ".join(f"{k} {v:.2f}" for k, v in changed["report"]["timings"].items()))
    print("  its CPU per stage (s)       " + ", ".join(f"{k} {v:.2f}" for k, v in changed["stage_cpu"].items()))
    print(f"cold start                    import export_http {started_cold:.3f} s (best of 5; goal < 0.5)")
    print(f"after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
