"""Every enabled export run inline, one after another; one failing stops none.

The timer trigger no longer calls this: it queues one run per export (`engine.enqueue_all`), so
exports run in parallel, each in its own invocations. `run_all` stays for operators and tests
that want every export run in this process, waiting for each."""

from __future__ import annotations

import logging
from typing import Any

from shared.errors import ExportError
from shared.exporter import run_export
from shared.services import App

log = logging.getLogger(__name__)


def run_all(app: App, *, trigger: str = "timer") -> list[dict[str, Any]]:
    """Run every definition whose `enabled` is not false; a summary line per export."""
    summaries: list[dict[str, Any]] = []
    for name, raw in app.settings.definitions.items():
        if raw.get("enabled", True) is False:
            log.info("export '%s': disabled, skipped", name)
            summaries.append({"export": name, "status": "skipped"})
            continue
        try:
            report = run_export(name, raw, app.services, trigger=trigger)
        except ExportError as exc:  # run_in_progress: another run holds this export
            log.info("export '%s': skipped, %s", name, exc.message)
            summaries.append({"export": name, "status": "skipped", "error": exc.code})
            continue
        except Exception as exc:  # a bug in one export's run must not stop the others
            log.error("export '%s': unexpected %s; going on with the other exports", name, type(exc).__name__)
            summaries.append({"export": name, "status": "failed", "error": "internal_error"})
            continue
        summaries.append(
            {
                "export": name,
                "status": report.status,
                "sent": report.counts.sent,
                "error": report.error.code if report.error else None,
            }
        )
    ok = sum(1 for s in summaries if s["status"] == "succeeded")
    log.info(
        "scheduled run: %d of %d export(s) succeeded: %s",
        ok,
        len(summaries),
        ", ".join(f"{s['export']}={s['status']}" for s in summaries),
    )
    return summaries
