"""One export run, in its own process (for a clean peak RSS): the same path the HTTP function
takes, shared.api.handle over the app built from settings. Prints a JSON line.

With BENCH_PROFILE=path set, the run is profiled (cProfile, every thread; a profiled run is slower
and its figures do not count): the main thread's stats go to path, each other thread's to
path.N, for `python -m pstats`."""

from __future__ import annotations

import contextlib
import cProfile
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any
from unittest import mock

from bench.memory import peak_rss_mb
from shared.api import routes
from shared.api.compose import get_app
from shared.report import RunReport
from shared.run import context, delivery, flows

_profiles: list[cProfile.Profile] = []
_stage_cpu: dict[str, float] = {}
_stage = context.stage
_finish = delivery.ContactSink.finish
_finished: list[float] = []  # perf_counter when a sink's last request was accepted


def _timed_finish(sink: delivery.ContactSink) -> None:
    """ContactSink.finish, noting when it returned: the last request accepted, where the minimal
    loop ends (what follows is confirming SendGrid's import jobs and storing the record)."""
    _finish(sink)
    _finished.append(time.perf_counter())


@contextlib.contextmanager
def _timed_stage(report: RunReport, name: str) -> Iterator[None]:
    """flows' stages, timed in CPU seconds too (the whole process, every thread, while it runs)."""
    started = time.process_time()
    with _stage(report, name):
        yield
    _stage_cpu[name] = _stage_cpu.get(name, 0.0) + time.process_time() - started


def _profile_thread(frame: FrameType, event: str, arg: Any) -> None:
    """Installed by threading.setprofile: the first event of a new thread starts its profiler."""
    sys.setprofile(None)
    profile = cProfile.Profile()
    _profiles.append(profile)
    profile.enable()


def main() -> None:
    # For the whole process: flows' stages timed, and the last request's acceptance noted.
    mock.patch.object(flows, "stage", _timed_stage).start()
    mock.patch.object(delivery.ContactSink, "finish", _timed_finish).start()
    app = get_app()
    target = os.environ.get("BENCH_PROFILE")
    profile = cProfile.Profile() if target else None
    if profile is not None:
        threading.setprofile(_profile_thread)
        profile.enable()
    started = time.perf_counter()
    # Run inline and answer with the report (where runs are queued, "wait" asks for that).
    body = b'{"wait": true}' if "wait" in getattr(routes, "RUN_OPTIONS", ()) else b""
    response = routes.handle(app, "POST", sys.argv[1], "run", body)
    elapsed = time.perf_counter() - started
    if profile is not None and target:
        profile.disable()
        profile.dump_stats(target)
        for n, other in enumerate(_profiles, start=1):
            other.disable()
            other.dump_stats(f"{target}.{n}")
    peak_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "status": response.status,
                "elapsed": elapsed,
                "peak_rss_mb": peak_mb,
                "report": response.body,
                "stage_cpu": _stage_cpu,
                "process_cpu": time.process_time(),
                "sent_at": _finished[-1] - started if _finished else None,
            }
        )
    )


if __name__ == "__main__":
    main()
