"""The one orchestration of a run:

  prepare   the segment's metadata, custom field ids, list check, the delivered record
  plan      read, validate, de-duplicate and count every row into a spill (contacts, in segment
            order) and keys (email, hash, position); on a first delivery that nothing read later
            can stop, also send as it goes ("read and send")
  decide    sort the keys, merge them with the record: what to send, what is unchanged, who left
  apply     send the chosen contacts from the spill in capped bodies, checkpointing each
  remove    mirror mode: unlink the leavers
  confirm   poll SendGrid's import jobs
  record    the new delivered record

Shaped like a sink: `plan` processes records one by one, `apply` packs them into request bodies.
No stage holds the segment in memory: spill and keys are files, sorting works in bounded runs,
and de-duplication keeps a 64-bit hash per profile.

Safety: one run per export at a time (a blob lease); after every accepted request a checkpoint
records how far the run got, so a run killed halfway is resumed by the next run on the same
snapshot and definition, resending at most one request's contacts; a run near the host's time
limit stops by itself, checkpointed, and reports `partial` with `resumable: true`.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared import chunking, delta, jobs
from shared.definitions import ExportDefinition, parse_definition
from shared.errors import ExportError
from shared.mapping import ContactMapper, Deduplicator, Rejected, resolve_custom_fields
from shared.rejects import RejectsLog, RowRef
from shared.report import RunReport, refresh_status
from shared.sendgrid import MAX_QUERY_CHARS, SEARCH_EMAILS_MAX, SendGridClient, SendGridRejected
from shared.source import BlobSource, Segment
from shared.state import StateStore

log = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 50_000
IMPORT_FAILED = "failed in SendGrid import"


@dataclass(frozen=True)
class JobPolling:
    """How long a run waits for SendGrid to apply what it accepted. Jobs still pending after
    `max_wait` are checked again by the status endpoint and by the next run."""

    max_wait: float = 300.0
    first_interval: float = 1.0
    max_interval: float = 30.0


@dataclass
class Services:
    source: BlobSource
    state: StateStore
    sendgrid: Callable[[], SendGridClient]  # made on demand: a refused definition needs none
    workdir: str | None = None
    max_contacts_per_request: int = chunking.MAX_CONTACTS_PER_REQUEST
    max_body_bytes: int = chunking.MAX_BODY_BYTES
    # Seconds a run may go on sending before it checkpoints and stops (under functionTimeout).
    time_limit: float = 25 * 60
    job_polling: JobPolling = field(default_factory=JobPolling)
    lease_seconds: int = 60
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    full_refresh: bool = False  # send every valid contact, changed or not
    confirm_removals: bool = False  # let a mirror run remove more than max_removal_fraction


Item = tuple[int, RowRef]  # (position in the spill, row)


class _Run:
    """One run's working state; `run_export` below is the public entry."""

    def __init__(self, definition: ExportDefinition, services: Services, report: RunReport, tmp: Path,
                 options: RunOptions) -> None:
        self.definition = definition
        self.services = services
        self.report = report
        self.options = options
        self.tmp = tmp
        self.started = services.clock()
        self.spill_path = tmp / "contacts.spill"  # valid contacts in segment order
        # "email<TAB>hash<TAB>spill position<TAB>partition<TAB>row" per valid contact, in spill order
        self.keys_path = tmp / "keys.txt"
        self.key_runs: delta.Runs = []  # sorted runs of the keys (a first delivery, streamed)
        self.record_path = tmp / "record.tsv"  # the delivered record as this run found it
        self.streaming = False  # send while reading (see `can_stream`)
        self.sender: _Sender | None = None  # the streaming sender, until its last chunk is sent
        self.to_send_mask: bytearray | None = None  # spill positions to send; None: all of them
        self.decisions_path = tmp / "decisions.txt"  # one line per email of segment or record
        self.leavers_path = tmp / "leavers.txt"  # emails to unlink from the lists (mirror)
        self.rejects = RejectsLog(tmp / "rejects.csv", report)
        self.client: SendGridClient | None = None
        self.segment: Segment | None = None
        self.record_etag = ""
        self.checkpoint: dict[str, Any] | None = None
        self.managed = 0  # contacts in the delivered record: what this export put on its lists
        self.kept = Deduplicator()  # emails of rows rejected for another value: never removed
        self.removed = Deduplicator()  # emails unlinked (or already gone) this run
        self.deliveries = jobs.Deliveries()  # which send positions SendGrid applied
        # Contacts SendGrid refused with a 400, this run and the one it resumes. They count as
        # rejected, and leave counts.valid once the run ends (`settle_counts`).
        self.refused = 0

    def sendgrid(self) -> SendGridClient:
        if self.client is None:
            self.client = self.services.sendgrid()
        return self.client

    def settle_counts(self) -> None:
        """At the end: contacts SendGrid refused are rejects, not valid profiles."""
        self.report.counts.valid -= self.refused

    # -- plan ----------------------------------------------------------------------------------
    def prepare(self) -> ContactMapper:
        definition = self.definition
        self.segment = self.services.source.open_segment(definition.source_folder, definition.segment)
        self.report.source = self.segment.describe()
        custom = {}
        if definition.custom_fields:
            custom = resolve_custom_fields(definition.custom_fields, self.sendgrid().custom_fields())
        mapper = ContactMapper(definition, self.segment.columns, custom)
        missing = [i for i in definition.list_ids if not self.sendgrid().list_exists(i)]
        if missing:
            raise ExportError("unknown_list", f"SendGrid list(s) {', '.join(missing)} do not exist in the account")
        return mapper

    def plan(self, mapper: ContactMapper) -> None:
        """Read, validate and count every row; write the keys of the valid contacts and, unless
        they are sent as they are read, the contacts themselves to the spill."""
        assert self.segment is not None
        counts = self.report.counts
        first_time = Deduplicator().first_time
        lists = delta.lists_suffix(self.definition.list_ids)
        max_contact = chunking.max_contact_bytes(self.definition.list_ids, self.services.max_body_bytes)
        limit = self.definition.max_profiles
        encode, contact_hash, to_map = chunking.encode_contact, delta.contact_hash, mapper.map
        packer: chunking.Packer[Item] | None = None
        sender = None
        spill_contacts = not self.streaming  # a streamed contact is sent already: keys are enough
        if self.streaming:
            packer = chunking.Packer(self.definition.list_ids, self.services.max_contacts_per_request,
                                     self.services.max_body_bytes)
            sender = _Sender(self)
        # The hot loop: one pass per row, counters kept in locals and stored as it goes.
        read = valid = 0
        with open(self.spill_path, "wb") as spill, open(self.keys_path, "wb") as keys:
            for partition, number, values in self.services.source.rows(self.segment):
                read += 1
                result = to_map(values)
                if type(result) is not dict:
                    assert isinstance(result, Rejected)
                    self.rejects.reject((partition, number), result.reason, result.detail)
                    if result.email:
                        self.kept.first_time(result.email)
                elif not first_time(result["email"]):
                    counts.duplicates += 1
                    self.rejects.list((partition, number), "duplicate email", "an earlier row has the same email")
                else:
                    encoded = encode(result)
                    if len(encoded) > max_contact:
                        self.rejects.reject((partition, number), "contact too large", f"{len(encoded)} bytes encoded")
                        self.kept.first_time(result["email"])
                        continue
                    if valid == limit:
                        counts.read, counts.valid = read, valid + 1
                        raise ExportError(
                            "too_many_profiles",
                            f"the segment has more than max_profiles ({limit}) valid profiles; "
                            "nothing was sent. Raise max_profiles or narrow the segment",
                        )
                    keys.write(f"{result['email']}\t{contact_hash(encoded, lists)}\t{valid}\t{partition}\t{number}\n"
                               .encode("utf-8", "surrogateescape"))
                    if spill_contacts:
                        spill.write(f"{partition}\t{number}\t".encode("utf-8", "surrogateescape") + encoded + b"\n")
                    if packer is not None:
                        full = packer.add((valid, (partition, number)), encoded)
                        if full is not None and not self.stream(sender, full):
                            packer = None  # out of time: read on for the counts, send no more
                    valid += 1
                if read % PROGRESS_EVERY_ROWS == 0:
                    counts.read, counts.valid = read, valid
                    log.info("export '%s': read %d rows, %d valid", self.definition.name, read, valid)
            counts.read, counts.valid = read, valid
            if packer is not None:
                last = packer.flush()
                if last is not None:
                    self.stream(sender, last)
        # The last chunk may still be in flight: `finish_streaming` waits for it, so the caller
        # can compare meanwhile.
        self.sender = sender

    def finish_streaming(self) -> None:
        """Wait for the last chunk sent while reading, store the report, then confirm."""
        if self.sender is not None:
            sender, self.sender = self.sender, None
            sender.close()
        self.services.state.save_report(self.report.to_dict())  # sent; a crash while polling keeps this
        self.confirm()

    def stream(self, sender: _Sender | None, chunk: chunking.Chunk[Item]) -> bool:
        assert sender is not None
        try:
            return sender.submit(chunk)
        except BaseException:
            sender.close(raise_errors=False)
            raise

    def load_state(self) -> None:
        """What earlier runs left: the delivered record and, if one stopped early, its checkpoint."""
        self.record_etag = self.services.state.download_record(self.definition.name, str(self.record_path))
        self.checkpoint = self.services.state.load_checkpoint(self.definition.name)

    def can_stream(self) -> bool:
        """Send while reading? Only when nothing read later can change what is sent: no
        delivered record yet (everything is new, nothing leaves), no checkpoint to resume, and
        the segment cannot hold more than max_profiles valid profiles. That last is proven from
        the partition sizes (a valid row takes at least a byte per column plus a 6-character
        email), else by counting the rows first."""
        assert self.segment is not None
        if self.record_path.stat().st_size or self.checkpoint:
            return False
        limit = self.definition.max_profiles
        smallest_row = len(self.segment.columns) + len("a@b.cc")
        if sum(p.size for p in self.segment.partitions) // smallest_row <= limit:
            return True
        return self.services.source.count_rows(self.segment) <= limit

    def decide(self) -> None:
        """Compare the segment with the delivered record: what to send, what to unlink. Only the
        short keys are sorted; the contacts stay in the spill, in segment order, and are sent
        from there."""
        report = self.report
        record_path = self.record_path
        mirror = self.definition.sync_mode == "mirror"
        upsert = remove = unchanged = managed = 0
        send_all = self.options.full_refresh or record_path.stat().st_size == 0
        mask = None if send_all else bytearray(self.report.counts.valid)
        with (open(self.keys_path, "rb") as keys, open(record_path, "rb") as record,
              open(self.decisions_path, "wb") as decisions, open(self.leavers_path, "wb") as leavers):
            current = (_key_fields(line) for line in delta.external_sort(keys, self.tmp))
            entries = delta.read_record(record)
            for decision in delta.diff(current, entries, full_refresh=self.options.full_refresh):
                position = -1
                if decision.old_hash is not None:
                    managed += 1
                if decision.action == delta.SEND:
                    position, upsert = int(decision.payload), upsert + 1
                    if mask is not None:
                        mask[position] = 1
                elif decision.action == delta.SAME:
                    unchanged += 1
                elif mirror and decision.email.decode() not in self.kept:
                    leavers.write(decision.email + b"\n")
                    remove += 1
                decisions.write(b"\t".join([decision.email, decision.new_hash or b"", decision.old_hash or b"",
                                            decision.action.encode(), str(position).encode()]) + b"\n")
        self.managed = managed
        self.to_send_mask = mask
        report.plan = {"upsert": upsert, "remove": remove}
        report.counts.unchanged = unchanged

    def guard(self) -> None:
        """A truncated or failed upstream export must not empty a list."""
        remove, fraction = self.report.plan["remove"], self.definition.max_removal_fraction
        if remove and remove > fraction * self.managed and not self.options.confirm_removals:
            raise ExportError(
                "removal_guard",
                f"this run would remove {remove} of the {self.managed} contacts this export manages on its "
                f"list(s), more than max_removal_fraction ({fraction:g}); nothing was sent or removed. "
                'If the segment really shrank, run again with {"confirm_removals": true}',
            )

    # -- apply ---------------------------------------------------------------------------------
    def to_send(self, start: int) -> Iterator[tuple[Item, bytes]]:
        """The contacts to send, from spill position `start` on, in segment order."""
        mask = self.to_send_mask
        with open(self.spill_path, "rb") as spill:
            for position, line in enumerate(spill):
                if position < start or (mask is not None and not mask[position]):
                    continue
                partition, number, encoded = line.rstrip(b"\n").split(b"\t", 2)
                yield (position, (partition.decode("utf-8", "surrogateescape"), int(number))), encoded

    def run_identity(self) -> dict[str, Any]:
        """What must be equal for a checkpoint to apply: the same sends in the same order."""
        assert self.segment is not None
        return {"snapshot": self.segment.snapshot_id, "definition": self.definition.fingerprint(),
                "record": self.record_etag, "full_refresh": self.options.full_refresh}

    def resume(self) -> int:
        """Where to start sending: after the last accepted request of an unfinished run of this
        very snapshot, definition and record, else at the beginning."""
        state, name = self.services.state, self.definition.name
        checkpoint = self.checkpoint
        if not checkpoint or checkpoint.get("identity") != self.run_identity():
            if checkpoint:
                state.clear_checkpoint(name)  # another snapshot, definition or record: start again
            return 0
        report, counts = self.report, self.report.counts
        position = int(checkpoint["position"])
        self.refused = int(checkpoint.get("refused", 0))
        counts.sent = int(checkpoint["sent"])
        counts.rejected += self.refused
        if self.refused:
            report.rejects["rejected by SendGrid"] += self.refused
        report.jobs = list(checkpoint.get("jobs", []))
        self.deliveries = jobs.Deliveries(checkpoint.get("ranges", {}))
        report.resumed_from = {"run_id": checkpoint["run_id"], "contacts_skipped": position}
        log.info("export '%s': resuming run %s after %d contacts", name, checkpoint["run_id"], position)
        return position

    def save_checkpoint(self, position: int) -> None:
        first_run = self.report.resumed_from["run_id"] if self.report.resumed_from else self.report.run_id
        self.services.state.save_checkpoint(self.definition.name, {
            "identity": self.run_identity(),
            "run_id": first_run,
            "position": position,
            "sent": self.report.counts.sent,
            "refused": self.refused,
            "jobs": self.report.jobs,
            "ranges": self.deliveries.ranges,
        })

    def apply(self) -> None:
        """Send the chunks in order. One sender thread sends a chunk (and checkpoints it) while
        this thread packs the next, so reading the spill overlaps with waiting on SendGrid; only
        one chunk is in flight, so checkpoints stay in order."""
        start = self.resume()
        chunks = chunking.pack(self.to_send(start), self.definition.list_ids,
                               self.services.max_contacts_per_request, self.services.max_body_bytes)
        sender = _Sender(self)
        try:
            for chunk in chunks:
                if not sender.submit(chunk):
                    return
        finally:
            sender.close()

    def send_chunk(self, index: int, chunk: chunking.Chunk[Item]) -> None:
        self.deliver(list(zip(chunk.refs, chunk.parts, strict=True)), chunk.body)
        # While SendGrid took this one, it likely finished importing the one before: asking now
        # (a poll it would get at the end anyway) leaves little to wait for after the last send.
        earlier = [job for job in self.report.jobs[:-1] if jobs.is_pending(job)]
        if earlier:
            self.poll(earlier[:1])
        self.save_checkpoint(chunk.refs[-1][0] + 1)
        log.info("export '%s': request %d accepted; %d contacts sent", self.definition.name, index,
                 self.report.counts.sent)

    def deliver(self, items: list[tuple[Item, bytes]], body: bytes | None = None) -> None:
        """Send one body. A 400 fails the whole request for one bad contact, so the body is
        split in halves until the contacts SendGrid refuses are alone; the rest are delivered."""
        client = self.sendgrid()
        if body is None:
            body = chunking.build_body(self.definition.list_ids, (encoded for _, encoded in items))
        self.report.upserts += 1
        try:
            job_id = client.upsert_contacts(body)
        except SendGridRejected as rejected:
            fields = {str(e.get("field")) for e in rejected.errors if e.get("field")}
            if fields and not any(f.startswith("contacts[") for f in fields):
                # A request-level refusal (list_ids, the body): halving cannot isolate anything.
                raise ExportError("sendgrid_error", f"SendGrid refused the request (fields: {', '.join(sorted(fields))})")
            if len(items) == 1:
                (_, ref), _ = items[0]
                reason = "rejected by SendGrid" + (f" ({', '.join(sorted(fields))})" if fields else "")
                # Counted as rejected, and (at the end) no longer valid: read stays the sum of the parts.
                self.refused += 1  # only the sender thread changes it
                self.rejects.reject(ref, reason, "; ".join(str(e.get("message", "")) for e in rejected.errors),
                                    counted_as="rejected by SendGrid")
                return
            middle = len(items) // 2
            del body
            self.deliver(items[:middle])
            self.deliver(items[middle:])
            return
        self.report.counts.sent += len(items)
        self.report.jobs.append({"job_id": job_id, "contacts": len(items), "status": "pending"})
        self.deliveries.accepted(job_id, items[0][0][0], items[-1][0][0] + 1)

    def remove_leavers(self) -> None:
        """Mirror mode: unlink contacts this export put on the lists that left the segment.
        Contact ids come from an email search (at most 100 a call); unlinking leaves the
        contacts themselves in SendGrid."""
        client = self.sendgrid()
        with open(self.leavers_path, "rb") as leavers:
            while batch := [line.rstrip(b"\n").decode() for line in itertools.islice(leavers, SEARCH_EMAILS_MAX)]:
                ids = client.contact_ids(batch)
                for id_batch in _id_batches(list(ids.values())):
                    for list_id in self.definition.list_ids:
                        self.report.removal_jobs.append(client.remove_from_list(list_id, id_batch))
                for email in batch:  # unlinked now, or not in SendGrid any more: off the list either way
                    self.removed.first_time(email)
                self.report.counts.removed += len(batch)
                log.info("export '%s': %d of %d leavers unlinked", self.definition.name, self.report.counts.removed,
                         self.report.plan["remove"])

    # -- confirm -------------------------------------------------------------------------------
    def confirm(self) -> None:
        """Poll the import jobs until each is final or the wait allowed is over."""
        polling = self.services.job_polling
        deadline = self.services.clock() + polling.max_wait
        interval = polling.first_interval
        pending = [job for job in self.report.jobs if jobs.is_pending(job)]
        while pending:
            pending = self.poll(pending)
            if not pending or self.services.clock() + interval > deadline:
                break
            self.services.sleep(interval)
            interval = min(interval * 2, polling.max_interval)
        self.report.counts.failed = sum(job.get("failed", 0) for job in self.report.jobs)
        if pending:
            log.info("export '%s': %d import job(s) still pending; the status endpoint and the next run check them",
                     self.definition.name, len(pending))

    def poll(self, pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ask once about each pending job; the ones still pending."""
        for job in pending:
            errors_url = jobs.apply_status(job, self.sendgrid().import_status(job["job_id"]))
            if job["status"] in ("errored", "failed"):
                self.record_import_failures(job, errors_url)
        return [job for job in pending if jobs.is_pending(job)]

    def record_import_failures(self, job: dict[str, Any], errors_url: str | None) -> None:
        log.warning("export '%s': import job %s ended %s with %d contact(s) not applied",
                    self.definition.name, job["job_id"], job["status"], job.get("failed", 0))
        text = self.sendgrid().download_errors(errors_url) if errors_url and job["status"] == "errored" else None
        failures = dict(jobs.parse_errors_file(text)) if text else {}
        # Unknown which contacts failed (no readable errors file): none of the job counts as applied.
        self.deliveries.failed(job["job_id"], set(failures) if failures else None)
        first, end = self.deliveries.ranges.get(job["job_id"], (0, 0))
        mask = self.to_send_mask
        with open(self.keys_path, "rb") as keys:  # in spill order: line n is position n
            for position, line in enumerate(keys):
                if position >= end:
                    break
                if position < first or (mask is not None and not mask[position]):
                    continue
                email_bytes, _, _, partition, number = line.rstrip(b"\n").split(b"\t")
                email = email_bytes.decode()
                if job["status"] == "failed" or not failures or email in failures:
                    ref = (partition.decode("utf-8", "surrogateescape"), int(number))
                    self.rejects.list(ref, IMPORT_FAILED, failures.get(email, f"the import job ended {job['status']}"))

    def save_record(self) -> None:
        """The new delivered record: confirmed sends take their new hash, leavers unlinked go."""
        new_record = self.tmp / "record.next.tsv"
        with open(self.decisions_path, "rb") as decisions, open(new_record, "wb") as out:
            rows = (_decision_fields(line) for line in decisions)
            self.deliveries.settle(self.report.jobs)
            out.writelines(delta.next_record(rows, self.deliveries.applied,
                                             lambda email: email.decode() in self.removed))
        self.services.state.save_record(self.definition.name, str(new_record))

    # -- a first delivery, streamed ----------------------------------------------------------
    def sort_keys(self) -> None:
        """Streaming sent every valid contact (there was no record): the plan is all upserts, and
        the only comparison left is sorting the keys for the next record."""
        counts = self.report.counts
        self.report.plan = {"upsert": counts.valid, "remove": 0}
        counts.unchanged = 0
        with open(self.keys_path, "rb") as keys:
            self.key_runs = delta.sorted_runs(keys, self.tmp)  # merged while the record is written

    def save_streamed_record(self) -> None:
        """The first record: every applied contact of the sorted keys."""
        new_record = self.tmp / "record.next.tsv"
        self.deliveries.settle(self.report.jobs)
        applied = self.deliveries.applied
        everything = not self.refused and self.deliveries.all_applied()
        with open(new_record, "wb") as out:
            if everything:  # the usual case: every contact was sent and applied
                out.writelines(line[: line.index(b"\t", line.index(b"\t") + 1)] + b"\n"
                               for line in delta.merge_runs(self.key_runs))
            else:
                for line in delta.merge_runs(self.key_runs):
                    email, digest, position, _ = line.split(b"\t", 3)
                    if applied(int(position), email):
                        out.write(email + b"\t" + digest + b"\n")
        self.services.state.save_record(self.definition.name, str(new_record))

    def close(self) -> None:
        if self.sender is not None:  # an error while streaming: stop the sender, keep the error
            self.sender.close(raise_errors=False)
        if self.client is not None:
            self.report.retries += self.client.retries
            self.client.close()
        self.rejects.close()


class _Sender:
    """Sends chunks from one background thread, one in flight at a time, so the caller packs
    (or reads) the next while this one waits on SendGrid; checkpoints stay in order."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sender")
        self.in_flight: Future[None] | None = None
        self.sent_chunks = 0

    def wait(self) -> None:
        if self.in_flight is not None:
            in_flight, self.in_flight = self.in_flight, None
            in_flight.result()  # raises what the sender raised

    def submit(self, chunk: chunking.Chunk[Item]) -> bool:
        """Queue a chunk; False (and nothing sent) once the run's time limit has passed."""
        run = self.run
        self.wait()
        if run.services.clock() - run.started > run.services.time_limit:
            run.report.resumable = True
            log.warning("export '%s': time limit reached after %d contacts sent; checkpointed, the next run goes "
                        "on from here", run.definition.name, run.report.counts.sent)
            return False
        self.sent_chunks += 1
        self.in_flight = self.pool.submit(run.send_chunk, self.sent_chunks, chunk)
        return True

    def close(self, raise_errors: bool = True) -> None:
        try:
            if raise_errors:
                self.wait()
        finally:
            self.pool.shutdown(wait=True)


def _key_fields(line: bytes) -> tuple[bytes, bytes, bytes]:
    email, digest, position, _ = line.split(b"\t", 3)  # the row reference is not compared
    return email, digest, position


def _decision_fields(line: bytes) -> tuple[bytes, bytes, bytes, str, int]:
    email, new_hash, old_hash, action, position = line.rstrip(b"\n").split(b"\t")
    return email, new_hash, old_hash, action.decode(), int(position)


def _id_batches(ids: list[str]) -> Iterator[list[str]]:
    """Contact ids in groups whose comma-joined query stays under MAX_QUERY_CHARS."""
    batch: list[str] = []
    size = 0
    for contact_id in ids:
        if batch and size + len(contact_id) + 1 > MAX_QUERY_CHARS:
            yield batch
            batch, size = [], 0
        batch.append(contact_id)
        size += len(contact_id) + 1
    if batch:
        yield batch


def recheck_jobs(name: str, services: Services) -> dict[str, Any] | None:
    """Check the pending import jobs of the export's latest report once and store the result.
    Returns the (possibly updated) latest report."""
    latest = services.state.latest_report(name)
    if not latest or not any(jobs.is_pending(job) for job in latest.get("jobs", [])):
        return latest
    client = services.sendgrid()
    try:
        for job in latest["jobs"]:
            if jobs.is_pending(job):
                errors_url = jobs.apply_status(job, client.import_status(job["job_id"]))
                if errors_url:
                    text = client.download_errors(errors_url)
                    failures = jobs.parse_errors_file(text) if text else []
                    log.warning("export '%s': import job %s ended %s; %d contact(s) listed as failed",
                                name, job["job_id"], job["status"], len(failures))
    except ExportError as exc:
        log.warning("export '%s': could not re-check import jobs: %s", name, exc.message)
        return latest
    finally:
        client.close()
    refresh_status(latest)
    services.state.save_report(latest)
    return latest


def run_export(
    name: str,
    raw_definition: dict[str, Any],
    services: Services,
    *,
    trigger: str,
    options: RunOptions = RunOptions(),
) -> RunReport:
    """Run one export and return its report (stored in the state container, but for a dry run,
    which writes nothing anywhere).

    A failed run does not raise: the report's `error` says what went wrong, and its code maps to
    an HTTP status. Only `run_in_progress` (another run holds the export) raises ExportError,
    since such a run never started and stores no report.
    """
    if options.dry_run:
        return _run(name, raw_definition, services, trigger, options)
    lease = services.state.acquire_run_lease(name, services.lease_seconds)
    try:
        recheck_jobs(name, services)
        return _run(name, raw_definition, services, trigger, options)
    finally:
        lease.release()


def _run(name: str, raw_definition: dict[str, Any], services: Services, trigger: str, options: RunOptions) -> RunReport:
    report = RunReport(export=name, trigger=trigger, dry_run=options.dry_run, full_refresh=options.full_refresh)
    log.info("export '%s': run %s started (trigger=%s, dry_run=%s, full_refresh=%s)", name, report.run_id, trigger,
             options.dry_run, options.full_refresh)
    writes = not options.dry_run
    with tempfile.TemporaryDirectory(prefix="sg-export-", dir=services.workdir) as tmp:
        run: _Run | None = None
        try:
            definition = parse_definition(raw_definition)
            report.sync_mode = definition.sync_mode
            run = _Run(definition, services, report, Path(tmp), options)
            with stage(report, "prepare"):
                mapper = run.prepare()
                run.load_state()
                run.streaming = writes and run.can_stream()
            with stage(report, "read and send" if run.streaming else "read"):
                run.plan(mapper)
            if not writes:
                with stage(report, "compare"):
                    run.decide()
            elif run.streaming:
                # Everything was new and is being sent: the comparison only feeds the next
                # record, so it runs while the last request goes and the import jobs are polled.
                with stage(report, "compare and confirm"), ThreadPoolExecutor(1, "confirm") as pool:
                    confirming = pool.submit(run.finish_streaming)
                    try:
                        run.sort_keys()
                    finally:
                        confirming.result()
                if not report.resumable:
                    services.state.clear_checkpoint(name)
                    with stage(report, "record"):
                        run.save_streamed_record()
            else:
                with stage(report, "compare"):
                    run.decide()
                run.guard()
                with stage(report, "send"):
                    run.apply()
                if not report.resumable:
                    services.state.clear_checkpoint(name)
                    if definition.sync_mode == "mirror":
                        with stage(report, "remove"):
                            run.remove_leavers()
                services.state.save_report(report.to_dict())  # sent; a crash while polling keeps this
                with stage(report, "confirm"):
                    run.confirm()
                if not report.resumable:
                    with stage(report, "record"):
                        run.save_record()
        except ExportError as exc:
            report.error = exc
        except Exception as exc:  # a bug: keep the type and where, not the message (it may quote data)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error("export '%s': unexpected %s at %s:%s", name, type(exc).__name__, Path(where.filename).name,
                      where.lineno)
            report.error = ExportError("internal_error", f"unexpected {type(exc).__name__}; see the function log")
        finally:
            if run is not None:
                run.close()
                run.settle_counts()
                if run.rejects.lines and writes:
                    report.rejects_blob = _save_rejects(services.state, report, run.rejects.path)
            report.finish()
            if writes:
                try:
                    services.state.save_report(report.to_dict())
                except ExportError as exc:
                    log.error("export '%s': could not store the run report: %s", name, exc.message)
    _log_summary(report)
    return report


@contextmanager
def stage(report: RunReport, name: str) -> Iterator[None]:
    """Time a stage of the run into report.timings (shown in the report and the benchmark)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        report.timings[name] = report.timings.get(name, 0.0) + time.perf_counter() - started


def _save_rejects(state: StateStore, report: RunReport, path: Path) -> str | None:
    try:
        with open(path, "rb") as stream:
            return state.save_rejects(report.export, report.run_id, stream)
    except ExportError as exc:
        log.error("export '%s': could not store the rejects file: %s", report.export, exc.message)
        return None


def _log_summary(report: RunReport) -> None:
    c = report.counts
    log.info(
        "export '%s': run %s %s; read=%d valid=%d rejected=%d duplicates=%d unchanged=%d sent=%d failed=%d "
        "removed=%d upserts=%d retries=%d%s",
        report.export, report.run_id, report.status, c.read, c.valid, c.rejected, c.duplicates, c.unchanged, c.sent,
        c.failed, c.removed, report.upserts, report.retries,
        f" error={report.error.code}" if report.error else "",
    )
