"""Timer trigger: runs every enabled export on EXPORT_SCHEDULE and logs a summary. Telemetry
(when configured) is flushed before the invocation returns."""

import logging

import azure.functions as func

from shared import telemetry
from shared.services import get_app
from shared.timer import run_all


def main(timer: func.TimerRequest) -> None:
    telemetry.configure()  # once per process, only with APPLICATIONINSIGHTS_CONNECTION_STRING
    try:
        if timer.past_due:
            logging.info("the export timer is past due; running now")
        run_all(get_app())
    finally:
        telemetry.flush()  # the instance may be frozen as soon as the invocation returns
