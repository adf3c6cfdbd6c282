"""Timer trigger: runs every enabled export on EXPORT_SCHEDULE and logs a summary."""

import logging

import azure.functions as func

from shared.services import get_app
from shared.timer import run_all


def main(timer: func.TimerRequest) -> None:
    if timer.past_due:
        logging.info("the export timer is past due; running now")
    run_all(get_app())
