"""Telemetry of runs in Application Insights: what the app emits, and the OpenTelemetry set-up.

- `configure()`: the Azure Monitor OpenTelemetry distro, once per process and only when
  APPLICATIONINSIGHTS_CONNECTION_STRING is set. It is imported here, lazily: a cold start
  (`import export_http`) loads none of OpenTelemetry. With APPLICATIONINSIGHTS_AUTHENTICATION_STRING
  set (infra sets `ClientId=...;Authorization=AAD`) the exporter sends with the app's identity.
  Microsoft's guidance for Python functions (articles/azure-functions/opentelemetry-howto.md,
  https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto?pivots=programming-language-python):
  host.json `"telemetryMode": "OpenTelemetry"`, APPLICATIONINSIGHTS_CONNECTION_STRING, and either
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true (the worker configures the distro) or the app
  calling `configure_azure_monitor()` itself: this app does the latter (not both: telemetry would
  be sent twice), so it can pick what is collected.
- `record_run(report)`: at the end of every run, one `ExportRun` custom event (customEvents:
  EVENT_PROPERTIES in customDimensions, EVENT_MEASUREMENTS in customMeasurements), the counters
  `export.runs` and `export.contacts` and the histogram `export.run.duration` (customMetrics).
- `span(stage, report)`: one span per stage of a run, carrying run_id (dependencies, type InProc).
- Every `requests` call (SendGrid, and the Azure SDK's, which use requests) is a dependency whose
  URL has no query string: SendGrid URLs may carry ids in it, and no profile value may leave.
- `flush()`: before each invocation returns (a Flex Consumption instance may be frozen right after).

Only counts, codes, names of exports and ids are emitted: no email, name, key or profile value.
These names are what infra/ alerts and workbook query (tests/test_infra.py checks them).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from shared.report import RunReport

log = logging.getLogger(__name__)

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SERVICE_NAME = "ci-sendgrid-export"
EVENT_NAME = "ExportRun"
EVENT_PROPERTIES = ("export", "run_id", "trigger", "status", "error_code", "sync_mode", "dry_run", "unchanged_snapshot")
EVENT_MEASUREMENTS = (
    "read",
    "valid",
    "rejected",
    "duplicates",
    "unchanged",
    "sent",
    "failed",
    "removed",
    "upserts",
    "retries",
    "duration_seconds",
)
METRIC_RUNS = "export.runs"  # counter; attributes export, status
METRIC_CONTACTS = "export.contacts"  # counter; attributes export, outcome
METRIC_DURATION = "export.run.duration"  # histogram, seconds; attributes export, status
CONTACT_OUTCOMES = ("sent", "rejected", "failed", "removed")
# The exporter's attribute names for a custom event and its measurements (azure-monitor-
# opentelemetry-exporter, export/logs/_exporter.py: _MICROSOFT_CUSTOM_EVENT_NAME and
# _MICROSOFT_CUSTOM_MEASUREMENTS in _constants.py; measurements as one JSON object).
_EVENT_NAME_ATTRIBUTE = "microsoft.custom_event.name"
_MEASUREMENTS_ATTRIBUTE = "microsoft.custom_measurements"
# The distro's logging handler goes on this logger only: the app's log lines already reach
# Application Insights through the Functions host, and must not be sent twice.
_OTEL_LOGGER = "ci_sendgrid_export.telemetry"
FLUSH_TIMEOUT_MS = 10_000


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.configured = False
        self.instruments: dict[str, Any] = {}
        self.last_event: dict[str, Any] | None = None


_state = _State()


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Set up the distro once per process when the connection string is set; whether it is."""
    env = os.environ if env is None else env
    if _state.configured:
        return True
    connection_string = (env.get(CONNECTION_STRING) or "").strip()
    if not connection_string:
        return False
    with _state.lock:
        if _state.configured:
            return True
        try:
            _configure(connection_string)
        except Exception as exc:  # telemetry must never stop an export
            log.error("telemetry: Azure Monitor could not be configured: %s", type(exc).__name__)
            return False
        _state.configured = True
        return True


def _configure(connection_string: str) -> None:
    # The VM resource detector probes the instance metadata endpoint: no use on Functions.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_app_service")
    from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - lazy: cold start
    from opentelemetry import metrics  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - lazy: cold start

    configure_azure_monitor(
        connection_string=connection_string,
        logger_name=_OTEL_LOGGER,
        resource=Resource.create({"service.name": SERVICE_NAME}),
        # Every span (the distro's default keeps 5 traces a second, and each stage is a trace):
        # a run makes a few spans per request, far below what sampling is for.
        sampling_ratio=1.0,
        # Live metrics and performance counters poll in the background of a short-lived instance.
        enable_live_metrics=False,
        enable_performance_counters=False,
        # requests is instrumented below, with the query string cut; urllib3/urllib spans would
        # repeat the same calls with it.
        instrumentation_options={"requests": {"enabled": False}, "urllib3": {"enabled": False}, "urllib": {"enabled": False}},
    )
    RequestsInstrumentor().instrument(request_hook=_without_query)
    meter = metrics.get_meter(SERVICE_NAME)
    _state.instruments = {
        METRIC_RUNS: meter.create_counter(METRIC_RUNS, unit="{run}", description="Finished export runs"),
        METRIC_CONTACTS: meter.create_counter(
            METRIC_CONTACTS, unit="{contact}", description="Contacts by outcome: sent, rejected, failed, removed"
        ),
        METRIC_DURATION: meter.create_histogram(METRIC_DURATION, unit="s", description="Run duration"),
    }


def strip_query(url: str) -> str:
    """The URL without query string or fragment (or user info)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _without_query(span: Any, request: Any) -> None:
    if span is None or not span.is_recording():
        return
    url = strip_query(str(getattr(request, "url", "") or ""))
    span.set_attribute("http.url", url)  # old and new HTTP semantic conventions
    span.set_attribute("url.full", url)


@contextmanager
def span(stage: str, report: RunReport) -> Iterator[None]:
    """A span for one stage of a run (nothing at all without a connection string)."""
    if not _state.configured:
        yield
        return
    from opentelemetry import trace  # noqa: PLC0415 - lazy: cold start

    tracer = trace.get_tracer(SERVICE_NAME)
    with tracer.start_as_current_span(stage, attributes={"run_id": report.run_id, "export": report.export, "stage": stage}):
        yield


def _seconds(report: RunReport) -> float:
    measured = sum(report.timings.values())
    try:
        started = datetime.fromisoformat(report.started_at.replace("Z", "+00:00"))
        finished = datetime.fromisoformat((report.finished_at or "").replace("Z", "+00:00"))
        return round(max(measured, (finished - started).total_seconds()), 3)
    except ValueError:
        return round(measured, 3)


def run_event(report: RunReport, unchanged_snapshot: bool) -> dict[str, Any]:
    """The ExportRun event: name, properties (strings) and measurements (numbers)."""
    counts = report.counts
    properties = {
        "export": report.export,
        "run_id": report.run_id,
        "trigger": report.trigger,
        "status": report.status,
        "error_code": report.error.code if report.error else "",
        "sync_mode": report.sync_mode,
        "dry_run": str(report.dry_run).lower(),
        "unchanged_snapshot": str(unchanged_snapshot).lower(),
    }
    measurements: dict[str, float] = {
        "read": counts.read,
        "valid": counts.valid,
        "rejected": counts.rejected,
        "duplicates": counts.duplicates,
        "unchanged": counts.unchanged,
        "sent": counts.sent,
        "failed": counts.failed,
        "removed": counts.removed,
        "upserts": report.upserts,
        "retries": report.retries,
        "duration_seconds": _seconds(report),
    }
    return {"name": EVENT_NAME, "properties": properties, "measurements": measurements}


def record_run(report: RunReport) -> dict[str, Any] | None:
    """Emit a finished run's event and metrics. Never raises; returns the event (see last_event)."""
    try:
        event = run_event(report, report.unchanged_snapshot)
        _state.last_event = event
        if _state.configured:
            _emit(event)
        return event
    except Exception as exc:  # telemetry must never fail a run
        log.error("telemetry: the run's event was not emitted: %s", type(exc).__name__)
        return None


def _emit(event: dict[str, Any]) -> None:
    from opentelemetry._logs import SeverityNumber, get_logger  # noqa: PLC0415 - lazy: cold start

    properties, measurements = event["properties"], event["measurements"]
    get_logger(SERVICE_NAME).emit(
        severity_number=SeverityNumber.INFO,
        body=EVENT_NAME,
        attributes={**properties, _EVENT_NAME_ATTRIBUTE: EVENT_NAME, _MEASUREMENTS_ATTRIBUTE: json.dumps(measurements)},
    )
    attributes = {"export": properties["export"], "status": properties["status"]}
    _state.instruments[METRIC_RUNS].add(1, attributes)
    _state.instruments[METRIC_DURATION].record(measurements["duration_seconds"], attributes)
    for outcome in CONTACT_OUTCOMES:
        if measurements[outcome]:
            _state.instruments[METRIC_CONTACTS].add(measurements[outcome], {"export": properties["export"], "outcome": outcome})


def last_event() -> dict[str, Any] | None:
    """The ExportRun event of the last run in this process, emitted or not (`make demo` prints it)."""
    return _state.last_event


def flush(timeout_ms: int = FLUSH_TIMEOUT_MS) -> None:
    """Send what is buffered now; a no-op when telemetry is not configured. Never raises."""
    if not _state.configured:
        return
    try:
        from opentelemetry import _logs, metrics, trace  # noqa: PLC0415 - lazy: cold start

        for provider in (trace.get_tracer_provider(), _logs.get_logger_provider(), metrics.get_meter_provider()):
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                force_flush(timeout_ms)
    except Exception as exc:
        log.warning("telemetry: flush failed: %s", type(exc).__name__)
