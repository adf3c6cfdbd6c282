"""Queue trigger on RUN_QUEUE: one message, one unit of work for one export (run, continue,
confirm, or an Event Grid event), handed to shared/engine/handlers.py. Raises only for an unexpected
error, so the host retries the message (and after maxDequeueCount moves it to <queue>-poison).
Telemetry (when configured) is flushed before the invocation returns."""

import azure.functions as func

from shared import telemetry
from shared.api.compose import get_app
from shared.engine import handlers


def main(msg: func.QueueMessage) -> None:
    telemetry.configure()  # once per process, only with APPLICATIONINSIGHTS_CONNECTION_STRING
    try:
        handlers.handle(get_app(), msg.get_body(), getattr(msg, "dequeue_count", None) or 1)
    finally:
        telemetry.flush()  # the instance may be frozen as soon as the invocation returns
