"""Queue trigger on RUN_QUEUE: one message, one unit of work for one export (run, continue,
confirm, or an Event Grid event), handed to shared/engine/handlers.py. Raises only for an unexpected
error, so the host retries the message (and after maxDequeueCount moves it to <queue>-poison).
Telemetry (when configured) is flushed before the invocation returns, and log lines from the
app's own threads carry the invocation id (shared/telemetry.py, invocation)."""

import azure.functions as func

from shared import telemetry
from shared.api.compose import get_app
from shared.engine import handlers


# `context`: the invocation's, which the Python worker passes to a `main` that names it (its
# annotation must be azure.functions.Context itself, not Optional, or the worker refuses to load
# the function); None when called outside the host (tests).
def main(msg: func.QueueMessage, context: func.Context = None) -> None:  # type: ignore[assignment]
    with telemetry.invocation(context):
        handlers.handle(get_app(), msg.get_body(), getattr(msg, "dequeue_count", None) or 1)
