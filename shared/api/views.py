"""The API's answers as people read them: a run report's summary, an error line, and the tables
of each command's answer (history, sources, lists, fields, a preview)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.api.terminal import clean, count, is_number, table


def run_seconds(report: Mapping[str, Any]) -> float | None:
    try:
        started = datetime.fromisoformat(str(report["started_at"]).replace("Z", "+00:00"))
        finished = datetime.fromisoformat(str(report["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        timings = report.get("timings")
        return round(sum(v for v in timings.values() if is_number(v)), 1) if isinstance(timings, dict) and timings else None
    return round((finished - started).total_seconds(), 1)


def when(timestamp: object) -> str:
    """An ISO 8601 time to the minute, as people read it: 2026-12-01 18:22."""
    return str(timestamp or "")[:16].replace("T", " ")


def reasons(rejects: object, most: int = 4) -> str:
    if not isinstance(rejects, dict) or not rejects:
        return ""
    ranked = sorted(((n, clean(reason)) for reason, n in rejects.items() if isinstance(n, int)), key=lambda x: (-x[0], x[1]))
    shown = ", ".join(f"{reason} {n:,}" for n, reason in ranked[:most])
    return shown + (f", and {len(ranked) - most} more reasons" if len(ranked) > most else "")


def report_lines(report: Mapping[str, Any], *, rejects_note: bool = True) -> list[str]:
    """A run report in a dozen lines: what ran, the counts with the reasons for rejects, the
    requests and import jobs, and anything that needs attention (`rejects_note`: where the
    rejects CSV is)."""
    counts = report.get("counts") if isinstance(report.get("counts"), dict) else {}
    assert isinstance(counts, dict)
    requests_made = report.get("requests") if isinstance(report.get("requests"), dict) else {}
    assert isinstance(requests_made, dict)
    seconds = run_seconds(report)
    head = f"{clean(report.get('export', '?'))}: run {clean(report.get('run_id', '?'))} {clean(report.get('status', '?'))}"
    head += " (dry run)" if report.get("dry_run") else ""
    head += f", {clean(report.get('trigger', '?'))}" + (f", {seconds:,} s" if seconds is not None else "")
    jobs = [job for job in report.get("jobs") or [] if isinstance(job, dict)]
    by_status = Counter(str(job.get("status")) for job in jobs)
    rows: list[list[object]] = [
        ["rows read", counts.get("read", 0), ""],
        ["valid", counts.get("valid", 0), ""],
        ["rejected", counts.get("rejected", 0), reasons(report.get("rejects"))],
        ["duplicates", counts.get("duplicates", 0), "same email again: the first valid row was kept"],
    ]
    if counts.get("unchanged"):
        rows.append(["unchanged", counts["unchanged"], "delivered before as they are: not sent again"])
    if report.get("dry_run"):
        plan = report.get("plan") if isinstance(report.get("plan"), dict) else {}
        assert isinstance(plan, dict)
        rows.append(["to send", plan.get("upsert", 0), "new and changed contacts (nothing was sent)"])
        if report.get("sync_mode") == "mirror":
            rows.append(["to unlink", plan.get("remove", 0), "left the segment"])
    else:
        upserts, retries = requests_made.get("upserts", 0), requests_made.get("retries", 0)
        rows.append(["sent", counts.get("sent", 0), f"in {count(upserts, 'request')}, {count(retries, 'retry', 'retries')}"])
        detail = ", ".join(f"{n:,} {clean(status)}" for status, n in sorted(by_status.items()))
        rows.append(["import jobs", len(jobs), detail])
        if counts.get("failed") or any(job.get("status") in ("errored", "failed") for job in jobs):
            rows.append(["failed in SendGrid", counts.get("failed", 0), "accepted, not applied: sent again next run"])
        if report.get("sync_mode") == "mirror":
            rows.append(["unlinked", counts.get("removed", 0), "left the segment"])
    lines = [head, *table(None, rows, indent="  ")]
    if report.get("rejects_blob") and rejects_note:
        lines.append(f"  rejects CSV: {clean(report['rejects_blob'])} in the state container (it may hold profile data)")
    awaiting = report.get("awaiting")
    if isinstance(awaiting, dict) and awaiting.get("jobs"):
        lines.append(f"  awaiting {count(int(awaiting['jobs']), 'import job')} until {clean(awaiting.get('until'))}")
    if report.get("held_back"):
        lines.append(f"  removals held back: {clean(report['held_back'])}")
    if report.get("resumable"):
        lines.append("  stopped at its time limit; it goes on from its checkpoint")
    error = report.get("error")
    if isinstance(error, dict):
        lines.append(f"  error {clean(error.get('code'))}: {clean(error.get('message'))}")
    return lines


def error_line(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return f"error {clean(error.get('code'))}: {clean(error.get('message'))}"
    return "error: the answer holds no error"


def history_lines(body: dict[str, Any], name: str, before: str | None) -> list[str]:
    """A page of an export's runs, newest first, one line each (`before`: the run it pages back from)."""
    runs = [r for r in body.get("runs", []) if isinstance(r, dict)]
    if not runs:
        return [f"{clean(name)} has no runs" + (" before that one" if before else " yet")]
    rows: list[list[object]] = []
    for run in runs:
        counts = run.get("counts") if isinstance(run.get("counts"), dict) else {}
        assert isinstance(counts, dict)
        error = run.get("error") if isinstance(run.get("error"), dict) else None
        rows.append(
            [
                run.get("run_id"),
                run.get("trigger"),
                run.get("status") or run.get("problem"),
                run_seconds(run),
                counts.get("read"),
                counts.get("sent"),
                counts.get("rejected"),
                error.get("code") if error else "",
            ]
        )
    lines = table(["run", "trigger", "status", "seconds", "read", "sent", "rejected", "error"], rows)
    if body.get("next_before"):
        lines += ["", f"older runs: python -m shared history {name} --before {clean(body['next_before'])}"]
    return lines


def render_sources(body: dict[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for source in body.get("sources", []):
        if not isinstance(source, dict):
            continue
        entities = [e for e in source.get("entities") or [] if isinstance(e, dict)]
        first = [source.get("folder"), when(source.get("snapshot_time"))]
        if not entities:
            rows.append([*first, "", None, None, None, source.get("problem") or "no entities"])
        for i, entity in enumerate(entities):
            columns = entity.get("columns") if isinstance(entity.get("columns"), list) else []
            assert isinstance(columns, list)
            rows.append(
                [
                    *(first if i == 0 else ["", ""]),
                    entity.get("name"),
                    len(columns),
                    entity.get("partitions"),
                    entity.get("bytes"),
                    (source.get("problem") or "") if i == 0 else "",
                ]
            )
    if not rows:
        return ["no Customer Insights exports found in SOURCE_CONTAINER"]
    lines = table(["folder", "snapshot", "segment", "columns", "partitions", "bytes", "problem"], rows)
    if body.get("continuation"):
        lines += ["", f"more: python -m shared sources --continuation {clean(body['continuation'])}"]
    return lines


def render_lists(body: dict[str, Any]) -> list[str]:
    lists = [item for item in body.get("lists", []) if isinstance(item, dict)]
    if not lists:
        return ["the SendGrid account has no contact lists"]
    return table(["id", "name", "contacts"], [[i.get("id"), i.get("name"), i.get("contact_count")] for i in lists])


def render_fields(body: dict[str, Any]) -> list[str]:
    reserved = [f for f in body.get("reserved", []) if isinstance(f, dict)]
    custom = [f for f in body.get("custom", []) if isinstance(f, dict)]
    lines = [
        "Reserved fields (mapping)",
        *table(["name", "type", "max length"], [[f.get("name"), f.get("type"), f.get("max_length")] for f in reserved], "  "),
    ]
    lines += ["", "Custom fields (custom_fields)"]
    if custom:
        lines += table(["id", "name", "type"], [[f.get("id"), f.get("name"), f.get("type")] for f in custom], "  ")
    else:
        lines.append("  none")
    return lines


def _flat(contact: dict[str, Any]) -> dict[str, Any]:
    """A sample contact with its nested objects (custom_fields) as columns of their own."""
    flat: dict[str, Any] = {}
    for key, value in contact.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def render_preview(body: dict[str, Any]) -> list[str]:
    """A preview: verdict, suggestions, problems, a masked sample, rejects and the plan."""
    definition = body.get("definition") if isinstance(body.get("definition"), dict) else {}
    assert isinstance(definition, dict)
    where = f"{clean(definition.get('segment', '?'))} in {clean(definition.get('source_folder', '?'))}"
    verdict = "the definition is valid" if body.get("valid") else "the definition is not valid yet"
    lines = [f"Preview of {where}: {count(int(body.get('rows_read') or 0), 'row')} read; {verdict}"]
    suggestions = [s for s in body.get("suggestions", []) if isinstance(s, dict)]
    if suggestions:
        lines += [
            "",
            "Suggestions",
            *table(["field", "value", "why"], [[s.get("field"), s.get("value"), s.get("why")] for s in suggestions], "  ", 80),
        ]
    problems = [p for p in body.get("problems", []) if isinstance(p, dict)]
    if problems:
        headers = ["field", "problem", "did you mean"]
        rows = [[p.get("field"), p.get("message"), p.get("did_you_mean") or ""] for p in problems]
        if not any(p.get("did_you_mean") for p in problems):
            headers, rows = headers[:2], [row[:2] for row in rows]
        lines += ["", "Problems", *table(headers, rows, "  ", limit=110)]
    sample = [_flat(c) for c in body.get("sample", []) if isinstance(c, dict)]
    if sample:
        keys = list(dict.fromkeys(k for contact in sample for k in contact))
        lines += ["", "Sample contacts (masked)", *table(keys, [[c.get(k) for k in keys] for c in sample], "  ")]
    rejects = reasons(body.get("rejects"))
    if rejects:
        lines += ["", f"Rows that would be rejected: {rejects}"]
    plan = body.get("plan")
    if isinstance(plan, dict):
        lines += [f"A run would send {plan.get('upsert', 0):,} contacts and unlink {plan.get('remove', 0):,}."]
    return lines
