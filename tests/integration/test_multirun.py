"""One truth for a run across time: many runs over changing snapshots, with faults, in upsert
and mirror mode; after every settled step SendGrid must hold exactly what the latest snapshot
says (fields, cleared values, list membership, others' contacts untouched), and no run report
may say `succeeded` while a contact it planned is not applied. The model and the fault
stand-ins are in tests/multirun.py.

A few seeds run by default (MULTIRUN_SEEDS, default 2 per mode, MULTIRUN_STEPS steps each,
default 6). `MULTIRUN_SEEDS=40` runs seeds 1-40 of each mode; `MULTIRUN_ONLY=7,12` runs just
those seeds; `MULTIRUN_MODES=mirror` one mode. A failure names the seed, the mode, the step,
the first differences and what each step did.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import API_KEY, LIST_ID, OTHER_LIST_ID, definition
from multirun import CUSTOM_FIELDS, PER_REQUEST, RATE_WINDOW, MultirunServer, MultirunState, Scenario, start_sandbox

from shared.services import App


def cases() -> list[tuple[str, int]]:
    only = os.environ.get("MULTIRUN_ONLY", "").strip()
    if only:
        seeds = [int(s) for s in only.split(",") if s.strip()]
    else:
        seeds = list(range(1, int(os.environ.get("MULTIRUN_SEEDS", "2")) + 1))
    modes = [m.strip() for m in os.environ.get("MULTIRUN_MODES", "upsert,mirror").split(",") if m.strip()]
    return [(mode, seed) for mode in modes for seed in seeds]


STEPS = int(os.environ.get("MULTIRUN_STEPS", "6"))


@pytest.fixture
def sandbox() -> Iterator[MultirunServer]:
    """This module's sandbox: conftest's account (lists, fields), with the fault stand-ins of
    tests/multirun.py (quick rate-limit resets, errors files cut short)."""
    state = MultirunState(api_keys={API_KEY}, rate_window=RATE_WINDOW)
    state.add_list("newsletter", LIST_ID)
    state.add_list("other", OTHER_LIST_ID)
    state.add_field("loyalty_tier", "Text")
    state.add_field("lifetime_value", "Number")
    state.add_field("member_since", "Date")
    server = start_sandbox(state)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("mode", "seed"), cases(), ids=[f"{mode}-seed{seed}" for mode, seed in cases()])
def test_sendgrid_holds_what_the_latest_snapshot_says_after_every_settled_run(
    app_factory: Callable[..., App],
    source_container: ContainerClient,
    sandbox: MultirunServer,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    seed: int,
) -> None:
    app = app_factory(
        [definition(sync_mode=mode, custom_fields=dict(CUSTOM_FIELDS))],
        services=dict(max_contacts_per_request=PER_REQUEST),
    )
    # A run waits for its import jobs half a second at most (late ones are settled later).
    polling: Any = app.services.job_polling
    app.services.job_polling = dataclasses.replace(polling, max_wait=0.5, first_interval=0.01, max_interval=0.05)
    Scenario(
        seed=seed, mode=mode, steps=STEPS, app=app, server=sandbox, container=source_container, monkeypatch=monkeypatch
    ).run()
