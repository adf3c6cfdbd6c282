"""Timer trigger: queues one run per enabled export on EXPORT_SCHEDULE (shared/engine/handlers.py) and
returns within seconds; the queue worker runs them, in parallel across instances. Telemetry
(when configured) is flushed before the invocation returns."""

import logging

import azure.functions as func

from shared import telemetry
from shared.api.compose import get_app
from shared.engine import handlers


def main(timer: func.TimerRequest) -> None:
    telemetry.configure()  # once per process, only with APPLICATIONINSIGHTS_CONNECTION_STRING
    try:
        if timer.past_due:
            logging.info("the export timer is past due; queueing now")
        handlers.enqueue_all(get_app())
    finally:
        telemetry.flush()  # the instance may be frozen as soon as the invocation returns
