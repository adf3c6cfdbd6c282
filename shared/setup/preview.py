"""POST /api/preview: a draft definition completed, checked, and tried on the segment, writing
nothing (no state container write, no SendGrid write; SendGrid is only read).

1. The folder is described (shared/source/discovery.py: columns and their CDM types) and the
   draft's account read (its lists and custom fields), if the app is configured for it.
2. The draft is completed (draft.complete: suggestions and problems).
3. The first `rows` rows are mapped with the run's own ContactMapper: the first `sample_size`
   contacts as they would be sent (masked unless `show_values`), and the reject reasons counted.
4. A complete, valid draft without problems gets the plan of the run's own dry run
   (run_export with RunOptions(dry_run=True)) against the record of the export of its name: an
   existing export's, or none (a first delivery) for a new name.
Sample values are returned in the answer only: nothing here logs them, and the mapper and the
dry run log counts and reasons only.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from shared.contacts.mapping import ContactMapper, Rejected
from shared.definitions import OVERLENGTH_POLICIES, ExportDefinition
from shared.errors import ExportError
from shared.run.exporter import RunOptions, run_export
from shared.services import App
from shared.setup import accounts, inputs, masking
from shared.setup.draft import Catalog, Completion, Problem, complete
from shared.setup.matching import did_you_mean
from shared.source import discovery
from shared.source.blob import SourceRow

TRIGGER = "preview"  # the dry run's trigger, in its report and ExportRun event (dry_run: true)
# Bounds beside `rows`: the plan's dry run stops at the run's time limit or this one, whichever
# is shorter (an HTTP answer must come within 230 s: docs/reference.md), and the sample stops
# reading at this many characters of values or seconds (a record may be up to 1 MiB).
PLAN_SECONDS = 150.0
SAMPLE_CHARS = 32 * 1024 * 1024
SAMPLE_SECONDS = 30.0


def preview_answer(app: App, body: bytes, query: Mapping[str, str]) -> dict[str, Any]:
    request = inputs.preview_request(body, query)
    draft = request.draft
    folder_name, segment_name = draft["source_folder"].strip().strip("/"), draft["segment"].strip()
    problems: list[Problem] = []
    columns = _columns(app, folder_name, segment_name, problems)
    client, account_problem = accounts.draft_client(app, draft)
    catalog: Catalog | None = None
    if client is not None:
        catalog = accounts.reading(client, accounts.catalog_of)
    if account_problem is not None:
        problems.append(account_problem)
    done = complete(draft, columns, catalog, app.settings.definitions)
    problems += done.problems
    sample: list[dict[str, Any]] = []
    rows_read, rejects = 0, Counter[str]()
    if columns is not None and "email" in done.reserved:
        try:
            sample, rows_read, rejects = _try_rows(app, done, folder_name, segment_name, request)
        except ExportError as exc:
            if exc.code == "storage_unavailable":
                raise
            problems.append(Problem("segment", discovery.short_reason(exc.message, (segment_name,))))
    plan = None
    if done.valid and not problems:
        services = dataclasses.replace(app.services, time_limit=min(app.services.time_limit, PLAN_SECONDS))
        report = run_export(
            str(done.definition["name"]), done.definition, services, trigger=TRIGGER, options=RunOptions(dry_run=True)
        )
        if report.error is None:
            plan = dict(report.plan)
        else:
            problems.append(Problem("plan", f"{report.error.code}: {discovery.short_reason(report.error.message)}"))
    return {
        "definition": done.definition,
        "suggestions": [{"field": s.field, "value": s.value, "why": s.why} for s in done.suggestions],
        "problems": [p.to_dict() for p in problems],
        "sample": sample if request.show_values else [masking.mask_contact(c) for c in sample],
        "masked": not request.show_values,
        "rows_read": rows_read,
        "rejects": dict(sorted(rejects.items())),
        "plan": plan,
        "valid": done.valid,
    }


def _columns(app: App, folder: str, segment: str, problems: list[Problem]) -> tuple[tuple[str, str], ...] | None:
    """The segment's columns (name, CDM type) as its folder's metadata says; None (and a problem)
    when the folder or the segment is not there."""
    limits = discovery.Limits()
    try:
        info = discovery.describe_folder(app.services.source, folder, limits, discovery.Budget.of(limits))
    except discovery.OutOfBudget:  # a fresh budget fits a folder: not expected
        problems.append(Problem("source_folder", "the folder is too large to describe"))
        return None
    if info.metadata is None:
        problems.append(
            Problem(
                "source_folder",
                "no model.json or *.manifest.cdm.json in this folder of SOURCE_CONTAINER (GET /api/sources lists them)",
            )
        )
        return None
    entity = next((e for e in info.entities if e.name == segment), None)
    if entity is None:
        names = [e.name for e in info.entities]
        close = did_you_mean(segment, names)
        problems.append(Problem("segment", f"the folder's {info.metadata} has no readable entity of this name", close))
        if info.problem:
            problems.append(Problem("source_folder", info.problem))
        return None
    return entity.columns


def _try_rows(
    app: App, done: Completion, folder: str, segment_name: str, request: inputs.PreviewRequest
) -> tuple[list[dict[str, Any]], int, Counter[str]]:
    """Map the first `request.rows` rows as a run would: the first `sample_size` distinct valid
    contacts, the number of rows read and each reject reason's count."""
    source = app.services.source
    segment = source.open_segment(folder, segment_name)
    overlength = done.definition.get("on_overlength", "truncate")
    mapping = ExportDefinition(
        name="preview",
        display_name="preview",
        source_folder=folder,
        segment=segment_name,
        list_ids=(),
        privacy_consent=False,
        mapping=dict(done.reserved),
        custom_fields={name: column for name, (_, column) in done.custom.items()},
        on_overlength=overlength if overlength in OVERLENGTH_POLICIES else "truncate",
    )
    mapper = ContactMapper(mapping, segment.columns, {name: found for name, (found, _) in done.custom.items()})
    sample: list[dict[str, Any]] = []
    rejects: Counter[str] = Counter()
    seen: set[str] = set()
    read = chars = 0
    started = app.services.clock()
    rows: Iterator[SourceRow] = source.rows(segment)
    try:
        for _, _, values in rows:
            read += 1
            chars += sum(map(len, values))
            mapped = mapper.map(values)
            if isinstance(mapped, Rejected):
                rejects[mapped.reason] += 1
            elif mapped["email"] in seen:
                rejects["duplicate email"] += 1
            else:
                seen.add(mapped["email"])
                if len(sample) < request.sample_size:
                    sample.append(mapped)
            if read >= request.rows or chars > SAMPLE_CHARS or app.services.clock() - started > SAMPLE_SECONDS:
                break
    finally:
        close = getattr(rows, "close", None)  # a generator: stops the partition's download
        if close is not None:
            close()
    return sample, read, rejects
