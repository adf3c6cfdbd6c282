"""Mirror mode's removals: the guard that keeps a truncated or failed upstream export from
emptying a list, and unlinking the leavers (contacts this export put on its lists that left the
segment). Unlinking leaves the contacts themselves in SendGrid.
"""

from __future__ import annotations

import itertools
import logging

from shared.contacts.dedup import EmailSet
from shared.delta.diff import Plan
from shared.errors import ExportError
from shared.run.context import RunContext, RunOptions
from shared.sendgrid.client import SEARCH_EMAILS_MAX

log = logging.getLogger(__name__)


def guard(plan: Plan, record_lists: tuple[str, ...], ctx: RunContext, options: RunOptions, lists_known: bool = True) -> None:
    """Refuse (before anything is sent) a run that would remove more than the definition allows,
    or remove anyone after `list_ids` changed: leavers are unlinked only from the lists the record
    says this export put them on, and moving lists is a decision an operator confirms. A record
    that does not say which lists it delivered to (`lists_known` False: an earlier release's) counts
    as a list change: confirmed, leavers are unlinked from the definition's lists only."""
    if plan.remove and not lists_known and not options.confirm_removals:
        raise ExportError(
            "removal_guard",
            "the delivered record does not say which list(s) this export put its contacts on (it was written by an "
            f"earlier release); this run would unlink {plan.remove} leaver(s) from the definition's list(s) "
            f"({', '.join(sorted(ctx.definition.list_ids))}); nothing was sent or removed. "
            'If the export always delivered to those lists, run again with {"confirm_removals": true}',
        )
    if plan.remove and set(record_lists) != set(ctx.definition.list_ids) and not options.confirm_removals:
        raise ExportError(
            "removal_guard",
            f"list_ids changed since the last delivery ({', '.join(sorted(record_lists))} -> "
            f"{', '.join(sorted(ctx.definition.list_ids))}); this run would unlink {plan.remove} leaver(s) from the "
            "list(s) this export put them on; nothing was sent or removed. "
            'To go ahead, run again with {"confirm_removals": true}',
        )
    fraction = ctx.definition.max_removal_fraction
    if plan.remove and plan.remove > fraction * plan.managed and not options.confirm_removals:
        raise ExportError(
            "removal_guard",
            f"this run would remove {plan.remove} of the {plan.managed} contacts this export manages on its "
            f"list(s), more than max_removal_fraction ({fraction:g}); nothing was sent or removed. "
            'If the segment really shrank, run again with {"confirm_removals": true}',
        )


def remove_leavers(ctx: RunContext, planned: int, record_lists: tuple[str, ...]) -> EmailSet:
    """Unlink the leavers listed in the workspace from the lists this export put them on (the
    record's lists, never one others manage); the emails that are off those lists now (unlinked,
    or no longer in SendGrid at all)."""
    client = ctx.sendgrid()
    report = ctx.report
    removed = EmailSet()
    unsearched = 0
    with open(ctx.workspace.leavers, "rb") as leavers:
        while batch := [line.rstrip(b"\n").decode() for line in itertools.islice(leavers, SEARCH_EMAILS_MAX)]:
            search = client.members.contact_ids(batch)
            ids = list(search.found.values())
            for list_id in record_lists:
                report.removal_jobs.extend(client.members.remove_from_list(list_id, ids))
            for email in batch:  # unlinked now, or not in SendGrid any more: off the list either way
                if email not in search.unsearchable:  # not looked up: stays in the record, tried again
                    removed.first_time(email)
                    report.counts.removed += 1
            if search.unsearchable:
                unsearched += len(search.unsearchable)
                log.warning(
                    "export '%s': %d leaver(s) could not be looked up in SendGrid (%s)",
                    ctx.name,
                    len(search.unsearchable),
                    ", ".join(sorted(set(search.unsearchable.values()))),
                )
            log.info("export '%s': %d of %d leavers unlinked", ctx.name, report.counts.removed, planned)
    if unsearched:
        report.held_back = (
            f"{unsearched} leaver(s) could not be looked up in SendGrid; they stay in the delivered "
            "record and are tried again next run"
        )
    return removed
