"""Sending contacts: one `ContactSink` packs encoded contacts into request bodies and sends them
from one sender thread, one request in flight, so the caller reads (or packs) the next while
SendGrid takes this one. Both flows use it: the streamed first delivery adds contacts as they are
read; the delta delivery adds them from the spill.

Before each request, its contacts are written to the record's journal (`write_ahead`, on a
journal thread while the request before it is in flight; the sender waits for it, and a journal
that cannot be written stops the run before that request goes): a contact SendGrid may have
taken is always known, even to a run that never stores its record (shared/state/journal.py).
After each accepted request the sender saves the checkpoint (so checkpoints stay in request
order) and has the oldest earlier pending job asked about once by a poller thread, while it goes
on to the next request: the answer is recorded by the sender when it comes back, so a status
poll never holds up a request. A 400 that names the contacts SendGrid refuses
drops exactly those (they become rejects) and resends the rest in one request; a 400 that names
none is split in halves, within a request budget and the run's time limit.

Thread ownership (while a sink is open):
- the sender thread writes `report.counts.sent`, `report.jobs`, `report.upserts`,
  `ctx.progress` (refused, deliveries), `self.polling` and the checkpoint blob; `finish()`
  writes them too (the last poll's answer), on the calling thread, once the sender is done;
- the poller thread only asks SendGrid (`confirm.fetch`: a status answer and its errors file)
  through the run's client, whose counters and pacer take their own locks; what it fetched is
  recorded by the sender (`confirm.record`);
- the journal thread only writes the journal, reading the key file (`KeyLines`, its own: the
  reading thread flushes the key lines of contacts before it hands them over);
- `report.counts.rejected` and `report.rejects` are written by both threads, only through the
  `RejectsLog` (under its lock);
- the calling thread reads the sender's fields only after `finish()` (or `abort()`) returned.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from shared.contacts import packing
from shared.delta.lines import parse_spill
from shared.errors import ExportError
from shared.invocation import carry_invocation
from shared.run.checkpoint import REFUSED, Checkpoint
from shared.run.confirm import JobAnswer, fetch, record
from shared.run.context import RunContext
from shared.sendgrid import jobs
from shared.sendgrid.client import SendGridRejected
from shared.sendgrid.fields import with_cleared
from shared.sendgrid.jobs import JobEntry

log = logging.getLogger(__name__)

Item = tuple[int, str, int]  # (send position, partition, row number)
Part = tuple[Item, bytes]  # an item with its encoded contact
BATCH = 1_024  # contacts handed to the packer at a time
HALVING_BUDGET_MIN = 8  # requests a 400 naming no contact may cost, at the least


class ContactSink:
    def __init__(
        self,
        ctx: RunContext,
        identity: dict[str, Any],
        save_checkpoint: Callable[[Checkpoint], None] | None = None,
        write_ahead: Callable[[bytes], None] | None = None,
    ) -> None:
        """`save_checkpoint` stores each checkpoint (default: the state container's blob);
        `write_ahead` appends a request's contacts to the record's journal before the request goes:
        their key lines, read from the run's key file (None: no journal is kept)."""
        self.ctx = ctx
        self.write_ahead = write_ahead
        self.keys = KeyLines(ctx.workspace.keys)
        self.progress = ctx.progress
        self.identity = identity
        self.save_checkpoint = save_checkpoint or (lambda cp: ctx.services.state.save_checkpoint(ctx.name, cp.to_json()))
        services = ctx.services
        self.packer: packing.Packer[Item] = packing.Packer(
            ctx.definition.list_ids, services.max_contacts_per_request, services.max_body_bytes
        )
        self.max_contact = packing.max_contact_bytes(ctx.definition.list_ids, services.max_body_bytes)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sender", initializer=carry_invocation())
        self.in_flight: Future[None] | None = None
        self.poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poller", initializer=carry_invocation())
        self.polling: tuple[JobEntry, Future[JobAnswer]] | None = None  # the job asked about, and the answer
        # Writes each request's journal lines while the request before it is in flight (its own
        # thread: a slow status poll must not hold up a request).
        self.journaler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal", initializer=carry_invocation())
        self.requests = 0
        self.open = True  # False once the run must stop sending (time limit, lost lease)

    # -- the calling thread -------------------------------------------------------------------
    def add_batch(self, items: list[Item], parts: list[bytes]) -> bool:
        """Take contacts in order (`parts[i]` encoded, for `items[i]`; the lists are copied, not
        kept); False once no more may be sent (the caller stops adding)."""
        if not self.open:
            return False
        for full in self.packer.extend(items, parts):
            if not self._submit(full):
                return False
        return True

    def add_from_spill(
        self, spill: Path, start: int = 0, mask: bytearray | None = None, clears: dict[int, bytes] | None = None
    ) -> bool:
        """Every spilled contact from position `start` on that `mask` selects (None: all), with
        the fields `clears` names for its position sent as "" (values this export set that are
        empty now); False once no more may be sent."""
        items: list[Item] = []
        parts: list[bytes] = []
        with open(spill, "rb") as lines:
            for position, line in enumerate(lines):
                if position < start or (mask is not None and not mask[position]):
                    continue
                (partition, row), encoded = parse_spill(line)
                if clears and position in clears:
                    encoded = packing.encode_contact(with_cleared(json.loads(encoded), clears[position]))
                    if len(encoded) > self.max_contact:  # the cleared fields took it over the cap
                        self.ctx.rejects.reject((partition, row), "contact too large", f"{len(encoded)} bytes encoded")
                        continue
                items.append((position, partition, row))
                parts.append(encoded)
                if len(parts) == BATCH:
                    if not self.add_batch(items, parts):
                        return False
                    items, parts = [], []
        return self.add_batch(items, parts)

    def finish(self) -> None:
        """Send the last body (if the run may go on), wait for every request and for the poll in
        flight (its answer recorded); raises what the sender raised."""
        try:
            if self.open:
                last = self.packer.flush()
                if last is not None:
                    self._submit(last)
            self._wait()
            self._take_answer(wait=True)
        finally:
            self.pool.shutdown(wait=True)
            self.poller.shutdown(wait=True)
            self.journaler.shutdown(wait=True)
            self.keys.close()

    def abort(self) -> None:
        """After an error elsewhere: let the request and the poll in flight end (the poll's answer
        is dropped: confirm asks again), keep the first error."""
        self.open = False
        self.pool.shutdown(wait=True)
        self.poller.shutdown(wait=True)
        self.journaler.shutdown(wait=True)
        self.keys.close()

    def _wait(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            in_flight.result()

    def _submit(self, chunk: packing.Chunk[Item]) -> bool:
        # Asked, and the journal written, while the request before it is in flight (the sender
        # waits for the journal before it sends): a request that will not go is not journaled.
        going_on = self.ctx.may_go_on()
        journaled = self.journaler.submit(self._journal, chunk.refs) if going_on and self.write_ahead is not None else None
        self._wait()
        if not going_on:
            self.open = False
            return False
        self.requests += 1
        self.in_flight = self.pool.submit(self._send_chunk, self.requests, chunk, journaled)
        return True

    # -- the journal thread -------------------------------------------------------------------
    def _journal(self, items: list[Item]) -> None:
        """Append the journal lines of a request's contacts (see the module docstring)."""
        assert self.write_ahead is not None
        self.write_ahead(b"".join(self.keys.at([item[0] for item in items])))

    # -- the sender thread --------------------------------------------------------------------
    def _send_chunk(self, index: int, chunk: packing.Chunk[Item], journaled: Future[None] | None) -> None:
        ctx = self.ctx
        if journaled is not None:
            journaled.result()  # not in the journal: not sent (raises what writing it raised)
        budget = [max(HALVING_BUDGET_MIN, 4 * math.ceil(math.log2(chunk.count + 1)))]
        self._deliver(chunk.refs, chunk.body, chunk.parts, budget)
        self._save_checkpoint(chunk.refs[-1][0] + 1)
        # While SendGrid took this one, it likely finished importing the one before: asking now
        # (a poll it would get at the end anyway) leaves little to wait for after the last send.
        self._take_answer(wait=False)
        earlier = [job for job in ctx.report.jobs[:-1] if jobs.is_pending(job)]
        if earlier and self.polling is None and self.open:
            self.polling = (earlier[0], self.poller.submit(fetch, ctx.sendgrid(), earlier[0]["job_id"]))
        log.info("export '%s': request %d accepted; %d contacts sent", ctx.name, index, ctx.report.counts.sent)

    def _take_answer(self, wait: bool) -> None:
        """Record the poller's answer, once it came (or, with `wait`, when it comes)."""
        if self.polling is None or not (wait or self.polling[1].done()):
            return
        job, future = self.polling
        self.polling = None
        try:
            record(job, future.result(), self.progress.deliveries)
        except ExportError as exc:  # only a head start: confirm asks again at the end
            log.warning("export '%s': an early look at an import job failed (%s); going on", self.ctx.name, exc.code)

    def _deliver(self, items: list[Item], body: bytes, parts: Callable[[], list[bytes]], budget: list[int]) -> None:
        """Send one body of `items`; `parts()` gives their encoded contacts, asked for only
        after a 400 (the body is then split)."""
        ctx = self.ctx
        ctx.report.upserts += 1
        budget[0] -= 1
        try:
            job_id = ctx.sendgrid().upsert_contacts(body)
        except SendGridRejected as rejected:
            del body  # a refused body split further: the halves are built anew
            self._refused(list(zip(items, parts(), strict=True)), rejected, budget)
            return
        ctx.report.counts.sent += len(items)
        entry: JobEntry = {"job_id": job_id, "contacts": len(items), "status": "pending"}
        ctx.report.jobs.append(entry)
        first, end = items[0][0], items[-1][0] + 1
        self.progress.deliveries.accepted(job_id, first, end)
        if len(items) != end - first:  # some positions inside this span were refused earlier
            sent = {item[0] for item in items}
            for position in range(first, end):
                if position not in sent:
                    self.progress.deliveries.refuse(position)

    def _resend(self, parts: list[Part], budget: list[int]) -> None:
        """Some of a refused body's contacts, in a body of their own."""
        encoded = [part for _, part in parts]
        # The body is built in the call, not held here: `_deliver` lets go of it before it splits
        # a refused one further (halving would otherwise keep a body at every level).
        self._deliver(
            [item for item, _ in parts], packing.build_body(self.ctx.definition.list_ids, encoded), lambda: encoded, budget
        )

    def _refused(self, parts: list[Part], rejected: SendGridRejected, budget: list[int]) -> None:
        named = {index: message for index, message in rejected.contacts.items() if 0 <= index < len(parts)}
        if named:
            for index, message in sorted(named.items()):
                self._refuse(parts[index], message)
            rest = [part for index, part in enumerate(parts) if index not in named]
            if rest:
                self._resend(rest, budget)
            return
        if rejected.request_level:
            # A request-level refusal (list_ids, the body): no contact causes it, nothing to isolate.
            fields = ", ".join(sorted(set(rejected.request_fields)))[:200]
            raise ExportError("sendgrid_error", f"SendGrid refused the request (fields: {fields})")
        if len(parts) == 1:
            self._refuse(parts[0], "; ".join(str(e.get("message", "")) for e in rejected.errors))
            return
        if budget[0] <= 0 or not self.ctx.may_go_on():
            raise ExportError(
                "sendgrid_error",
                "SendGrid kept refusing requests without naming the contacts at fault; "
                "stopped looking for them (the run is resumable from its checkpoint)",
            )
        middle = len(parts) // 2
        self._resend(parts[:middle], budget)
        self._resend(parts[middle:], budget)

    def _refuse(self, part: Part, message: str) -> None:
        (_, partition, row), _ = part
        self.progress.refused += 1
        self.ctx.rejects.reject((partition, row), REFUSED, message)

    def _save_checkpoint(self, position: int) -> None:
        report = self.ctx.report
        first_run = report.resumed_from["run_id"] if report.resumed_from else report.run_id
        deliveries = self.progress.deliveries
        self.save_checkpoint(
            Checkpoint(
                self.identity,
                first_run,
                position,
                report.counts.sent,
                self.progress.refused,
                report.jobs,
                deliveries.ranges,
                sorted(deliveries.refused),
            )
        )


class KeyLines:
    """Lines of the run's key file at given positions (line n is position n), read forward: each
    call asks for positions after those of the call before (requests go in position order)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: BinaryIO | None = None
        self.next = 0  # the position of the line read next

    def at(self, positions: list[int]) -> list[bytes]:
        if not positions:
            return []
        if self.handle is None:
            self.handle = open(self.path, "rb")  # noqa: SIM115 - kept open between calls, closed by close()
        handle, first = self.handle, positions[0]
        if first < self.next:
            raise ValueError("key lines are read forward only")
        deque(itertools.islice(handle, first - self.next), maxlen=0)  # skipped at C speed
        if positions[-1] - first == len(positions) - 1:  # one run of positions: the usual request
            found = list(itertools.islice(handle, len(positions)))
        else:
            found, at = [], first
            for position in positions:
                deque(itertools.islice(handle, position - at), maxlen=0)
                found.append(handle.readline())
                at = position + 1
        if len(found) != len(positions) or not found[-1].endswith(b"\n"):  # only the last can be cut short
            raise ValueError(f"the key lines up to position {positions[-1]} are not all there")
        self.next = positions[-1] + 1
        return found

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
