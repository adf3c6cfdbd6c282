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
- Every `requests` call (SendGrid, and the Azure SDK's, which use requests) is a dependency.
- No URL query and no email address leaves, in exceptions neither: every span goes out through
  one exporter (`_scrubbed`) that cuts the query (and fragment, and user info) from every URL in
  its name, attributes, status and events (`exception.message`, `exception.stacktrace`), and
  masks email addresses (`scrub`). SendGrid URLs carry ids in their query (`?contact_ids=`), an
  import job's errors file is a pre-signed link (`?signature=`), and requests' exceptions quote
  the URL they failed on.
- `flush()`: before each invocation returns (a Flex Consumption instance may be frozen right after).
- `invocation(context)`: what every trigger runs its work in: the set-up above, the log levels
  (`configure_logging`: the Azure SDK's per-request HTTP logging, which reaches the host at
  INFO under the Python worker, stays at WARNING unless AZURE_SDK_HTTP_LOGGING=1), the
  invocation for the app's own threads (shared/invocation.py), and the flush.

Only counts, codes, names of exports and ids are emitted: no email, name, key or profile value.
These names are what infra/ alerts and workbook query (tests/test_infra.py checks them).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from shared.invocation import serving

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from shared.invocation import HostContext
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
# The Azure SDK logs every request and response here at INFO (headers, URL with its query values
# redacted): 44-54 records for one 500-row run, each reaching the host under the Python worker,
# which sets the root logger to INFO (docs/reference.md). Kept at WARNING unless this variable
# of the process environment is 1 or true (an operator looking into storage calls).
SDK_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"
SDK_HTTP_LOGGING = "AZURE_SDK_HTTP_LOGGING"


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
    from azure.core.settings import settings  # noqa: PLC0415 - lazy: cold start
    from azure.core.tracing.ext.opentelemetry_span import OpenTelemetrySpan  # noqa: PLC0415 - lazy: cold start
    from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415 - lazy: cold start
    from azure.monitor.opentelemetry.exporter import (  # noqa: PLC0415 - lazy: cold start
        ApplicationInsightsSampler,
        AzureMonitorTraceExporter,
    )
    from opentelemetry import metrics, trace  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415 - lazy: cold start

    resource = Resource.create({"service.name": SERVICE_NAME})
    # Spans: the distro's own pipeline (azure/monitor/opentelemetry/_configure.py, _setup_tracing),
    # but the exporter is wrapped so that every span is scrubbed on its way out; the distro offers
    # no hook there, so tracing is set up here and disabled in the distro. Every span is kept (the
    # distro's default keeps 5 traces a second, and each stage is a trace): a run makes a few
    # spans per request, far below what sampling is for.
    provider = TracerProvider(sampler=ApplicationInsightsSampler(sampling_ratio=1.0), resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_scrubbed(AzureMonitorTraceExporter(connection_string=connection_string))))
    trace.set_tracer_provider(provider)
    settings.tracing_implementation = OpenTelemetrySpan  # the Azure SDK's spans, as the distro sets them
    configure_azure_monitor(
        connection_string=connection_string,
        logger_name=_OTEL_LOGGER,
        resource=resource,
        disable_tracing=True,
        # Live metrics and performance counters poll in the background of a short-lived instance.
        enable_live_metrics=False,
        enable_performance_counters=False,
        # requests is instrumented below; urllib3/urllib spans would repeat the same calls.
        instrumentation_options={"requests": {"enabled": False}, "urllib3": {"enabled": False}, "urllib": {"enabled": False}},
    )
    RequestsInstrumentor().instrument()
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


# A URL (its query, fragment and user info are cut); a path followed by a query or fragment, as
# requests' exceptions quote it ("Max retries exceeded with url: /x?signature=..."); an address.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
_PATH_QUERY = re.compile(r"(/[^\s?#'\"<>()]*)[?#][^\s'\"<>()]*")
_EMAIL = re.compile(r"[\w.!#$%&*+=^`|~-][\w.!#$%&'*+=^`|~-]*@[\w-]+(?:\.[\w-]+)+")  # o'brien@, not 'x@
EMAIL_MASK = "<email>"


def scrub(text: str) -> str:
    """`text` without URL queries (and fragments, and user info) and with email addresses masked."""
    text = _URL.sub(lambda found: strip_query(found.group(0)), text)
    return _EMAIL.sub(EMAIL_MASK, _PATH_QUERY.sub(r"\1", text))


def _scrubbed_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, tuple | list):
        return tuple(scrub(item) if isinstance(item, str) else item for item in value)
    return value


def _scrubbed_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _scrubbed_value(value) for key, value in (attributes or {}).items()}


def _scrubbed(exporter: SpanExporter) -> SpanExporter:
    """`exporter`, sending every span scrubbed: its name, attributes, status description, and its
    events' names and attributes (an exception's message and stack trace among them)."""
    from opentelemetry.sdk.trace import Event  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.sdk.trace import ReadableSpan as Span  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.sdk.trace.export import SpanExporter as Exporter  # noqa: PLC0415 - lazy: cold start
    from opentelemetry.trace import Status  # noqa: PLC0415 - lazy: cold start

    def clean(span: ReadableSpan) -> ReadableSpan:
        description = span.status.description
        return Span(
            name=scrub(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_scrubbed_attributes(span.attributes),
            events=[Event(scrub(e.name), _scrubbed_attributes(e.attributes), e.timestamp) for e in span.events],
            links=span.links,
            kind=span.kind,
            status=Status(span.status.status_code, scrub(description) if description else None),
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    class Scrubbed(Exporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return exporter.export([clean(span) for span in spans])

        def shutdown(self) -> None:
            exporter.shutdown()

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return exporter.force_flush(timeout_millis)

    return Scrubbed()


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


def configure_logging(env: Mapping[str, str] | None = None) -> None:
    """The log levels the app wants under the Functions host: the Azure SDK's per-request HTTP
    logging at WARNING, unless AZURE_SDK_HTTP_LOGGING is 1 or true (then it follows the root)."""
    env = os.environ if env is None else env
    wanted = (env.get(SDK_HTTP_LOGGING) or "").strip().lower() in ("1", "true")
    logging.getLogger(SDK_HTTP_LOGGER).setLevel(logging.NOTSET if wanted else logging.WARNING)


@contextmanager
def invocation(context: HostContext | None) -> Iterator[None]:
    """What every trigger runs its work in: telemetry configured (once per process, only with
    APPLICATIONINSIGHTS_CONNECTION_STRING) and the log levels set; the threads the app starts tied
    to the invocation `context` the host passed (None outside the host); and telemetry flushed
    before the invocation returns, as the instance may be frozen as soon as it does."""
    configure()
    configure_logging()
    try:
        with serving(context):
            yield
    finally:
        flush()
