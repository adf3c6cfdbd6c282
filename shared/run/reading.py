"""The first stages of a run: `prepare` (the segment's metadata, custom field ids, the list check,
the delivered record and any checkpoint that applies) and `read`, the hot loop that reads,
validates, de-duplicates and counts every row once.

`read` writes a key line per valid contact and, unless the contacts go straight to a sink, a
spill line. On a first delivery (no record) it is handed a sink: contacts are sent as they are
read once `max_profiles` is proven out of reach (by the bytes left to read; until then they wait
in the spill), so "more than max_profiles valid profiles -> nothing sent" holds without reading
the segment twice.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import dataclass, field
from typing import Any

from shared.contacts import packing
from shared.contacts.dedup import EmailSet
from shared.contacts.mapping import STRUCTURAL, ContactMapper, Rejected, resolve_custom_fields
from shared.delta import diff, extsort
from shared.delta.lines import encode_key, encode_spill
from shared.errors import ExportError
from shared.run import checkpoint
from shared.run.checkpoint import Checkpoint
from shared.run.context import RunContext
from shared.run.delivery import BATCH, ContactSink, Item
from shared.sendgrid.answers import looks_like_id
from shared.sendgrid.fields import CustomField, UnsetCodes, field_codes
from shared.source.blob import Segment
from shared.state.record import RecordInfo

log = logging.getLogger(__name__)

PROGRESS_EVERY_ROWS = 49_152  # a multiple of CHECK_EVERY_ROWS + 1
CHECK_EVERY_ROWS = 4_095  # rows between looks at the clock (a mask: every 4,096th row)
SMALLEST_EMAIL = len("a@b.cc")


@dataclass(frozen=True)
class Prepared:
    segment: Segment
    mapper: ContactMapper
    record_etag: str  # "" when there is no delivered record yet
    record_lists: tuple[str, ...]  # the lists the record's contacts were delivered to
    identity: dict[str, Any]  # what a checkpoint of this run records (and must match to resume)
    checkpoint: Checkpoint | None  # an unfinished run of this very identity
    reserved: tuple[str, ...] = ()  # the reserved fields the definition maps, the email aside
    custom: tuple[CustomField, ...] = ()  # the definition's custom fields, resolved to the account's ids
    record_fields: tuple[str, ...] | None = None  # the field codes the record was written against (None: unknown)
    # Whether the record says which lists it delivered to (a record an earlier release wrote does
    # not: `record_lists` is then the definition's, and the mirror guard takes it as a list change).
    record_lists_known: bool = True

    @property
    def field_codes(self) -> list[str]:
        return field_codes(self.reserved, self.custom)

    @property
    def first_delivery(self) -> bool:
        return not self.record_etag and self.checkpoint is None


@dataclass
class ReadResult:
    kept: EmailSet = field(default_factory=EmailSet)  # emails of rows rejected for another value
    structural: int = 0  # rows rejected because the file is damaged there (blocks removals)
    streamed: bool = False  # contacts went to the sink while reading


def prepare(ctx: RunContext, writes: bool) -> Prepared:
    definition, services = ctx.definition, ctx.services
    segment = services.source.open_segment(definition.source_folder, definition.segment)
    ctx.report.source = segment.describe()
    custom = {}
    if definition.custom_fields:
        custom = resolve_custom_fields(definition.custom_fields, ctx.sendgrid().custom_fields())
    mapper = ContactMapper(definition, segment.columns, custom)
    missing = [i for i in definition.list_ids if not ctx.sendgrid().list_exists(i)]
    if missing:
        raise ExportError("unknown_list", f"SendGrid list(s) {', '.join(missing)} do not exist in the account")
    record = services.state.record.download(definition.name, str(ctx.workspace.record))
    identity = checkpoint.identity(segment, definition, record.etag, ctx.options.full_refresh)
    stored = services.state.load_checkpoint(definition.name) if writes else None
    found = checkpoint.matching(stored, identity)
    if writes and found is None:
        # Another snapshot, definition or record: what an unfinished run may have sent goes into
        # the record before its checkpoint goes (then the record is another: so is the identity).
        record = take_in_journal(ctx, record, Checkpoint.from_json(stored) if stored is not None else None)
        identity = checkpoint.identity(segment, definition, record.etag, ctx.options.full_refresh)
    if stored is not None and found is None:
        services.state.clear_checkpoint(definition.name)  # start again
    return Prepared(
        segment,
        mapper,
        record.etag,
        record.list_ids or definition.list_ids,
        identity,
        found,
        tuple(name for name in definition.mapping if name != "email"),
        tuple(custom[name] for name in definition.custom_fields),
        record.fields,
        record.list_ids is not None or not record.etag,
    )


def take_in_journal(ctx: RunContext, record: RecordInfo, stale: Checkpoint | None) -> RecordInfo:
    """Merge the export's journal (what runs that did not store their record were about to send,
    shared/state/journal.py) into the record in the workspace, store the record (if it is still
    the one read), then remove the journal; the record as it is now. `stale`: the checkpoint of
    the runs that wrote the journal (which of their requests SendGrid accepted, with which import
    job), or None. Called before a checkpoint that does not apply is discarded: a contact SendGrid
    may have taken is never forgotten (a killed worker at any point leaves the journal, the
    checkpoint, or both, and merging the same journal twice gives the same record)."""
    state, workspace, name = ctx.services.state, ctx.workspace, ctx.name
    journal = state.record.journal.download(name, str(workspace.journal))
    if journal is None:
        return record
    if workspace.journal.stat().st_size:
        merged = workspace.root / "record.merged.tsv"
        with open(workspace.journal, "rb") as lines:
            runs = extsort.sorted_runs(lines, workspace.root)
        # The journal's unset codes mean what they say only against the fields the record keeps.
        unknown = record.fields is not None and journal.fields != record.fields
        with open(workspace.record, "rb") as old, open(merged, "wb") as out:
            out.writelines(diff.merge_journal(old, extsort.merged(runs), jobs_by_position(stale), unknown))
        if record.etag:  # the record's lists, and those the journal's runs delivered to
            lists = None if record.list_ids is None else tuple(sorted({*record.list_ids, *(journal.list_ids or ())}))
            fields = record.fields
        else:
            lists, fields = journal.list_ids, journal.fields
        etag = state.record.save(name, str(merged), record.etag, lists or (), list(fields) if fields is not None else None)
        merged.replace(workspace.record)
        log.info("export '%s': an unfinished run's journal was merged into the delivered record", name)
        record = RecordInfo(etag, lists or None, fields)
    state.record.journal.remove(name)
    return record


def jobs_by_position(stale: Checkpoint | None) -> diff.JobAt:
    """What became of the contact at a position, by the checkpoint of the runs that sent it: the
    job id of the accepted request that carried it, False when SendGrid refused it (a 400), None
    when no accepted request did (not sent, or accepted after the last checkpoint was saved)."""
    if stale is None:
        return lambda position: None
    spans = sorted((first, end, job_id) for job_id, (first, end) in stale.ranges.items())
    starts = [first for first, _, _ in spans]
    refused = set(stale.refused_positions)

    def job_at(position: int) -> bytes | bool | None:
        index = bisect.bisect_right(starts, position) - 1
        if index < 0 or position >= spans[index][1]:
            return None
        if position in refused:
            return False
        job_id = spans[index][2]
        return job_id.encode() if looks_like_id(job_id) else None

    return job_at


def _check_time(ctx: RunContext, read_rows: int, valid: int) -> None:
    """Progress now and then, and the run's time limit inside the read loop too: hostile rows must
    not hold a run past functionTimeout."""
    counts = ctx.report.counts
    counts.read, counts.valid = read_rows, valid
    if read_rows % PROGRESS_EVERY_ROWS == 0:
        log.info("export '%s': read %d rows, %d valid", ctx.name, read_rows, valid)
    if ctx.services.clock() - ctx.started > ctx.services.time_limit:
        ctx.report.resumable = ctx.report.counts.sent > 0  # what was sent is checkpointed
        raise ExportError(
            "time_limit",
            f"the run's time limit passed while reading (after {read_rows} rows); "
            "raise RUN_TIME_LIMIT_SECONDS or look for rows that are slow to read",
        )


def _provable(segment: Segment, bytes_left: int, valid: int, limit: int) -> bool:
    """Whether the rows still to read cannot take the valid count past `limit`: a valid row takes
    at least a delimiter between each two columns and an email of 6 characters (and a line end,
    but for a partition's last line)."""
    return valid + bytes_left // (len(segment.columns) - 1 + SMALLEST_EMAIL) <= limit


def read(ctx: RunContext, prepared: Prepared, sink: ContactSink | None = None) -> ReadResult:
    """Read every row once: count it, reject it with a reason, or take it as a valid contact."""
    counts, rejects, definition = ctx.report.counts, ctx.rejects, ctx.definition
    segment = prepared.segment
    result = ReadResult()
    kept = result.kept.first_time
    lists = diff.lists_suffix(definition.list_ids)
    max_contact = packing.max_contact_bytes(definition.list_ids, ctx.services.max_body_bytes)
    limit = definition.max_profiles
    encode, contact_hash, to_map = packing.encode_contact, diff.contact_hash, prepared.mapper.map
    sizes = {p.name: p.size for p in segment.partitions}
    bytes_left = sum(sizes.values())
    # Sized up front (a row takes 200 bytes or more in real exports): growing the table costs more.
    first_time = EmailSet(expected=min(limit + 1, bytes_left // 200)).first_time
    # Which mapped fields a contact has no value for (kept in the record, to clear an emptied value
    # later): a contact with every field set has this many keys, and is by far the usual one.
    reserved, custom = prepared.reserved, prepared.custom
    every_key, every_custom = 1 + len(reserved) + (1 if custom else 0), len(custom)
    unset_of = UnsetCodes(reserved, custom)
    # Contacts go to the sink once the limit is proven, a batch at a time; until then (and
    # without a sink) they spill.
    spilling = sink is None or not _provable(segment, bytes_left, 0, limit)
    items: list[Item] = []
    parts: list[bytes] = []
    add_item, add_part = items.append, parts.append
    current = None
    read_rows = valid = 0
    spill_path = ctx.workspace.spill
    with open(spill_path, "wb") as spill, open(ctx.workspace.keys, "wb") as keys:
        write_spill, write_key = spill.write, keys.write
        for read_rows, (partition, number, values) in enumerate(ctx.services.source.rows(segment), 1):
            if partition != current:  # a partition starts: the bytes left shrink, perhaps enough
                bytes_left -= sizes.get(current, 0) if current is not None else 0
                current = partition
                if spilling and sink is not None and _provable(segment, bytes_left, valid, limit):
                    spill.flush()
                    keys.flush()  # the sink's journal reads the key lines of what it is handed
                    spilling = False
                    sink.add_from_spill(spill_path)  # when that stops the sink, its add_batch says no more
            mapped = to_map(values)
            if type(mapped) is not dict:
                assert isinstance(mapped, Rejected)
                rejects.reject((partition, number), mapped.reason, mapped.detail)
                if mapped.reason in STRUCTURAL:
                    result.structural += 1
                if mapped.email:
                    kept(mapped.email)
            elif not first_time(email := mapped["email"]):
                counts.duplicates += 1
                rejects.list((partition, number), "duplicate email", "an earlier row has the same email")
            else:
                encoded = encode(mapped)
                if len(encoded) > max_contact:
                    rejects.reject((partition, number), "contact too large", f"{len(encoded)} bytes encoded")
                    kept(email)
                    continue
                if valid == limit:
                    counts.read, counts.valid = read_rows, valid + 1
                    raise ExportError(
                        "too_many_profiles",
                        f"the segment has more than max_profiles ({limit}) valid profiles; "
                        "nothing was sent. Raise max_profiles or narrow the segment",
                    )
                unset = (
                    ""
                    if len(mapped) == every_key and (not every_custom or len(mapped["custom_fields"]) == every_custom)
                    else unset_of(mapped)
                )
                write_key(encode_key(email, contact_hash(encoded, lists), valid, partition, number, unset))
                if spilling:
                    write_spill(encode_spill(partition, number, encoded))
                else:
                    add_item((valid, partition, number))
                    add_part(encoded)
                    if len(parts) == BATCH:
                        assert sink is not None
                        keys.flush()  # (a write of what is buffered: once a batch)
                        sink.add_batch(items, parts)  # out of time: read on for the counts, send no more
                        items.clear()  # the sink keeps copies
                        parts.clear()
                valid += 1
            if not read_rows & CHECK_EVERY_ROWS:
                _check_time(ctx, read_rows, valid)
        counts.read, counts.valid = read_rows, valid
    if parts and sink is not None:
        sink.add_batch(items, parts)
    result.streamed = not spilling  # sending overlapped reading
    if sink is not None and spilling:  # read to the end within the limit: proven now
        sink.add_from_spill(spill_path)
    return result
