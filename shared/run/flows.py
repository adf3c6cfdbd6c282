"""The three ways a run goes, each a straight list of stages:

  plan_only        a dry run: read, compare, report the plan; writes nothing anywhere
  first_delivery   no delivered record yet: everything is new, so contacts are sent while the
                   segment is read (once max_profiles is proven out of reach); the record is
                   sorted and staged while the import jobs are confirmed, and committed when
                   they applied every contact (else written as it turned out)
  delta_delivery   read, compare with the record, send what changed (resuming an unfinished run
                   of the same identity), unlink the leavers (mirror), confirm, store the record

A run that stops early on purpose (time limit, lost lease) is `resumable`: it keeps its
checkpoint and leaves the record as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from shared.delta import diff, extsort
from shared.delta.lines import unset_of
from shared.errors import ExportError
from shared.invocation import carry_invocation
from shared.run import mirror
from shared.run.checkpoint import resume
from shared.run.confirm import confirm, list_import_failures, settle_earlier_jobs
from shared.run.context import RunContext, stage
from shared.run.delivery import ContactSink
from shared.run.reading import Prepared, ReadResult, read
from shared.sendgrid import fields
from shared.state.record import StagedRecord

log = logging.getLogger(__name__)

HELD_BACK = (
    "{n} row(s) could not be read cleanly (damaged file: wrong number of columns, undecodable bytes, "
    "oversized values); removals are held back until a snapshot reads cleanly"
)


def plan_only(ctx: RunContext, prepared: Prepared) -> None:
    settle_earlier_jobs(ctx)
    with stage(ctx.report, "read"):
        result = read(ctx, prepared)
    with stage(ctx.report, "compare"):
        compare(ctx, prepared, result)


def first_delivery(ctx: RunContext, prepared: Prepared) -> None:
    report, workspace = ctx.report, ctx.workspace
    sink = ContactSink(ctx, prepared.identity, write_ahead=_journal(ctx, prepared))
    with stage(report, "read and send"):
        try:
            result = read(ctx, prepared, sink)
        except BaseException:
            sink.abort()
            raise
    report.streamed = result.streamed
    report.plan = {"upsert": report.counts.valid, "remove": 0}
    # The next record is sorted and uploaded (staged, not committed) while the last request goes
    # and the import jobs are polled.
    with stage(report, "compare and confirm"), ThreadPoolExecutor(1, "confirm", initializer=carry_invocation()) as pool:
        confirming = pool.submit(_finish_and_confirm, ctx, sink)
        try:
            staged = _stage_record(ctx, confirming)
        finally:
            confirming.result()
    list_import_failures(ctx, ctx.progress.deliveries, None)
    if report.resumable:
        return
    with stage(report, "record"):
        deliveries = ctx.progress.deliveries
        deliveries.settle(report.jobs)
        state, lists = ctx.services.state, ctx.definition.list_ids
        everything = not ctx.progress.refused and deliveries.all_applied()
        if everything and staged is not None:
            state.record.commit(ctx.name, staged, prepared.record_etag, lists, prepared.field_codes)
        else:  # some contacts were refused, failed or are pending: their lines differ
            with open(workspace.next_record, "wb") as out:
                out.writelines(_first_record(ctx, None if everything else deliveries.outcome, deliveries.may_hold))
            state.record.save(ctx.name, str(workspace.next_record), prepared.record_etag, lists, prepared.field_codes)
    # Only now: a run stopped before its record was stored resumes without resending (the new
    # record's etag makes the checkpoint stale anyway). The record says what became of every
    # contact the journal holds: it goes first, so a checkpoint never outlives its journal.
    ctx.services.state.record.journal.remove(ctx.name)
    ctx.services.state.clear_checkpoint(ctx.name)


def _stage_record(ctx: RunContext, confirming: Future[None]) -> StagedRecord | None:
    """The record a first delivery leaves when every contact sent is applied (the usual end),
    sorted and staged while the import jobs are confirmed; the commit is then one request. None
    when there is no point (the run stopped or failed meanwhile) or staging failed: the record is
    then written after the confirmation, as it turns out."""
    if ctx.report.resumable or (confirming.done() and confirming.exception() is not None):
        return None
    lines = _first_record(ctx, None)  # the keys are sorted here, before anything is staged
    try:
        return ctx.services.state.record.stage(ctx.name, lines)
    except ExportError as exc:
        log.warning("export '%s': the record was not staged (%s); it is uploaded after the confirmation", ctx.name, exc.message)
        return None


def _first_record(ctx: RunContext, outcome: diff.Outcome | None, may_hold: diff.MayHold | None = None) -> Iterator[bytes]:
    """The record after a first delivery (`diff.first_record`), from the key lines sorted now."""
    with open(ctx.workspace.keys, "rb") as keys:
        runs = extsort.sorted_runs(keys, ctx.workspace.root)
    return diff.first_record(extsort.merged(runs), outcome, may_hold)


def _finish_and_confirm(ctx: RunContext, sink: ContactSink) -> None:
    sink.finish()
    ctx.services.state.save_report(ctx.report.to_dict())  # sent; a crash while polling keeps this
    confirm(ctx, ctx.progress.deliveries)


def delta_delivery(ctx: RunContext, prepared: Prepared) -> None:
    report, workspace, state = ctx.report, ctx.workspace, ctx.services.state
    with stage(report, "settle"):
        settle_earlier_jobs(ctx)
    with stage(report, "read"):
        result = read(ctx, prepared)
    with stage(report, "compare"):
        plan = compare(ctx, prepared, result)
    mirroring = ctx.definition.sync_mode == "mirror" and plan.remove > 0
    if mirroring and result.structural:
        report.held_back = HELD_BACK.format(n=result.structural)
        mirroring = False
    elif mirroring:
        mirror.guard(plan, prepared.record_lists, ctx, ctx.options, prepared.record_lists_known)
    start = 0
    if prepared.checkpoint is not None:
        ctx.progress.deliveries = resume(prepared.checkpoint, report)
        ctx.progress.refused, start = prepared.checkpoint.refused, prepared.checkpoint.position
    sink = ContactSink(ctx, prepared.identity, write_ahead=_journal(ctx, prepared))
    with stage(report, "send"):
        try:
            sink.add_from_spill(workspace.spill, start, plan.send_mask, plan.clears)
        except BaseException:
            sink.abort()
            raise
        sink.finish()
    removed = None
    if not report.resumable:
        if mirroring:
            with stage(report, "remove"):
                removed = mirror.remove_leavers(ctx, plan.remove, prepared.record_lists)
    state.save_report(report.to_dict())  # sent; a crash while polling keeps this
    with stage(report, "confirm"):
        confirm(ctx, ctx.progress.deliveries)
        list_import_failures(ctx, ctx.progress.deliveries, plan.send_mask)
    if report.resumable:
        return
    with stage(report, "record"):
        deliveries = ctx.progress.deliveries
        deliveries.settle(report.jobs)
        gone = (lambda email: email.decode() in removed) if removed is not None else (lambda email: False)
        with open(workspace.decisions, "rb") as decisions, open(workspace.next_record, "wb") as out:
            carried_unknown = prepared.record_fields is None or list(prepared.record_fields) != prepared.field_codes
            out.writelines(
                diff.next_record(extsort.pieces(decisions), deliveries.outcome, gone, carried_unknown, deliveries.may_hold)
            )
        state.record.save(
            ctx.name, str(workspace.next_record), prepared.record_etag, ctx.definition.list_ids, prepared.field_codes
        )
    state.record.journal.remove(ctx.name)  # what it holds is in the record now
    state.clear_checkpoint(ctx.name)  # only now: a run stopped before this resumes without resending


def _journal(ctx: RunContext, prepared: Prepared) -> Callable[[bytes], None]:
    """How the sink writes a request's contacts to the record's journal before it sends them."""
    journal, lists, codes = ctx.services.state.record.journal, ctx.definition.list_ids, prepared.field_codes
    return lambda lines: journal.append(ctx.name, lines, lists, codes)


def compare(ctx: RunContext, prepared: Prepared, result: ReadResult) -> diff.Plan:
    """The plan: what to send, what is unchanged, who left (written to the workspace)."""
    workspace, report = ctx.workspace, ctx.report
    with (
        open(workspace.keys, "rb") as keys,
        open(workspace.record, "rb") as record,
        open(workspace.decisions, "wb") as decisions,
        open(workspace.leavers, "wb") as leavers,
    ):
        plan = diff.decide(
            keys,
            record,
            workspace.root,
            decisions,
            leavers,
            valid=report.counts.valid,
            has_record=workspace.record.stat().st_size > 0,
            mirror=ctx.definition.sync_mode == "mirror",
            keep=lambda email: email.decode() in result.kept,
            full_refresh=ctx.options.full_refresh,
            clears=_clears(prepared),
        )
    report.plan = {"upsert": plan.upsert, "remove": plan.remove}
    report.counts.unchanged = plan.unchanged
    return plan


def _clears(prepared: Prepared) -> Callable[[bytes, bytes], bytes] | None:
    """The rule for what a changed contact sends as "": fields this export set before (mapped when
    the record was written, and not unset in the contact's entry) that are empty now, among those
    that may be cleared (fields.clearable_codes). None when the record does not say which fields
    it was written against (an earlier release's): then nothing is cleared."""
    if prepared.record_fields is None:
        return None
    allowed = fields.clearable_codes(prepared.reserved, prepared.custom) & {c.encode() for c in prepared.record_fields}
    if not allowed:
        return None

    def clears(old_extra: bytes, unset: bytes) -> bytes:
        before = unset_of(old_extra)
        if before == diff.UNKNOWN:
            return b""
        return b",".join(sorted((set(unset.split(b",")) & allowed) - set(before.split(b","))))

    return clears
