"""Timer trigger: queues one run per enabled export on EXPORT_SCHEDULE (shared/engine/handlers.py) and
returns within seconds; the queue worker runs them, in parallel across instances. Telemetry
(when configured) is flushed before the invocation returns (shared/telemetry.py, invocation)."""

import logging

import azure.functions as func

from shared import telemetry
from shared.api.compose import get_app
from shared.engine import handlers


# `context`: the invocation's, which the Python worker passes to a `main` that names it (its
# annotation must be azure.functions.Context itself, not Optional, or the worker refuses to load
# the function); None when called outside the host (tests).
def main(timer: func.TimerRequest, context: func.Context = None) -> None:  # type: ignore[assignment]
    with telemetry.invocation(context):
        if timer.past_due:
            logging.info("the export timer is past due; queueing now")
        handlers.enqueue_all(get_app())
