"""Many runs over changing snapshots, with faults, checked against a model of the truth: the
machinery of tests/integration/test_multirun.py.

A seeded `random.Random` makes every snapshot from the one before (adds, removes, rejoins,
changed, emptied and refilled values, duplicates, invalid emails, ragged rows, bad numbers, NUL
bytes, partitions) and chooses the faults of each step (429 storms, 5xx, dropped connections,
late and partly failed import jobs, an errors file naming fewer contacts than errored_count, a
worker killed or stopped at its time limit mid-run, a new snapshot and its event during a run,
a run message delivered twice). Runs go through the app's entry points: POST with
{"wait": true} (inline), and POST / the timer / an Event Grid event through the run queue,
delivered by `MultirunHost` as the Functions host does. After each step has *settled* (its
latest run read the latest snapshot, ended without error, every import job final, nothing
pending or failed), SendGrid (the sandbox's account, in-process) must hold what the model says.

The model (`Truth`) keeps, per email, what SendGrid may hold: whether the contact may exist,
whether it may be on the export's list, and each mapped field's acceptable values (None: no
value). A contact in the segment must be on the list with exactly its mapped values (an
emptied Text or reserved field cleared once this export had set it, else what others keep;
Number fields are not cleared, by design). A contact that left keeps its values; in mirror mode
it is off the list unless the snapshot held removals back (a structural reject) or its row was
rejected for another value. A contact sent only by an interrupted run of a snapshot that never
settled may or may not have been applied: both are accepted, but no later snapshot may leave it
stale. Others' contacts (seeded before the first run) never change.

Fault stand-ins built here (the sandbox itself is not changed):
- `MultirunState` answers X-RateLimit-Reset in fractions of a second (SendGrid sends whole
  seconds; the client reads any number) so storms of 429s cost milliseconds, and can cut the
  next errored job's errors file to its first contact (`short_errors`).
- `Hooks` is the services' clock: at the n-th accepted request it kills the worker (WorkerCrash;
  from then on every state-store call fails too, as nothing more is written by a dead process;
  only the lease is given back, standing in for its expiry) or moves time past the run's limit;
  either may first write the next snapshot (and its BlobCreated event).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions.queue as func_queue
import pytest
import requests
from azure.storage.blob import ContainerClient
from helpers import API_KEY, COLUMNS, FOLDER, LIST_ID, OTHER_LIST_ID, run, write
from queue_harness import Invocation, QueueHost, WorkerCrash, describe

import export_worker
from shared.api import routes
from shared.engine import handlers
from shared.services import App
from tools import sendgrid_sandbox
from tools.sandbox_state import Fault, SandboxState, process_job
from tools.serving import serve_in_background

EXPORT = "vip"
FINAL = ("succeeded", "partial", "failed")
RATE_WINDOW = 0.3  # seconds: a 429 (injected or earned) asks for less than this
MAX_SETTLE_ROUNDS = 8
PER_REQUEST = 4  # contacts per PUT: several requests per run, so a crash lands mid-run
POOL = 90  # emails person0..person89 (0: over 100 characters, 1: an IDN top-level domain)

# The mapped fields as SendGrid holds them (reserved names; the custom ones by name here, by id there).
TEXT_KEYS = {
    "first_name": "FirstName",
    "last_name": "LastName",
    "city": "City",
    "state_province_region": "State",
    "postal_code": "PostCode",
    "country": "Country",
    "loyalty_tier": "Tier",
}
NUMBER_KEYS = {"lifetime_value": "Value"}
KEYS = {**TEXT_KEYS, **NUMBER_KEYS}
CUSTOM_FIELDS = {"loyalty_tier": "Tier", "lifetime_value": "Value"}
VOCABULARY = {
    "FirstName": ["Ana", "Björn", "Chloé", "Dev", "Eitan", "Fatima", "O'Neil", "Zoë"],
    "LastName": ["Costa", "Dubois", "García", "Smith, Jr.", "Ivanova", 'The "Rock"'],
    "City": ["Lisbon", "Porto", "Lyon", "Osaka", "São Paulo", "Austin"],
    "State": ["Lisboa", "TX", "Rhône", "Osaka", "SP"],
    "PostCode": ["1100-148", "78701", "69001", "530-0001"],
    "Country": ["Portugal", "France", "Japan", "United States", "Brazil"],
    "Tier": ["Gold", "Silver", "Bronze", "Platinum"],
}
BAD_NUMBERS = ("oops", "n/a", "twelve")
EMAIL, VALUE = COLUMNS.index("EMail"), COLUMNS.index("Value")


def pool_email(i: int) -> str:
    if i == 0:
        return "l" * 64 + "@" + "o" * 30 + ".example.com"  # 107 characters: leavers looked up by SGQL
    if i == 1:
        return "person1@example.xn--p1ai"
    return f"person{i}@example.com"


POOL_EMAILS = [pool_email(i) for i in range(POOL)]


# -- the sandbox, with two fault stand-ins of its own -------------------------------------------
@dataclass
class MultirunState(SandboxState):
    """The sandbox's account, with X-RateLimit-Reset in fractions of a second, and errors files
    that can be cut short (`short_errors`: the next N errored jobs with two or more failures name
    only the first, while errored_count still counts them all)."""

    short_errors: int = 0
    cut_jobs: list[str] = field(default_factory=list)
    not_applied: dict[str, list[str]] = field(default_factory=dict)  # job id -> emails its import did not apply
    left_out: dict[str, list[str]] = field(default_factory=dict)  # job id -> failed emails its cut errors file omits

    def rate_headers(self, endpoint: str) -> tuple[dict[str, str], float]:
        headers, end = super().rate_headers(endpoint)
        headers["X-RateLimit-Reset"] = f"{max(end - time.time(), 0.01):.3f}"
        return headers, end

    def after_import(self, job: dict[str, Any], job_id: str) -> None:
        outcome = job.get("outcome") or {}
        if outcome.get("status") in ("errored", "failed"):
            self.not_applied[job_id] = [row["email"] for row in errors_rows(str(job.get("errors_csv", "")))]
        if self.short_errors <= 0 or outcome.get("status") != "errored":
            return
        lines = str(job.get("errors_csv", "")).split("\r\n")
        if len([line for line in lines[1:] if line]) < 2:
            return
        self.short_errors -= 1
        job["errors_csv"] = "\r\n".join(lines[:2]) + "\r\n"
        self.cut_jobs.append(job_id)
        self.left_out[job_id] = [row["email"] for row in errors_rows("\r\n".join([lines[0], *lines[2:]]))]


class MultirunServer(sendgrid_sandbox.SandboxServer):
    state: MultirunState

    def _process_imports(self) -> None:
        """As the sandbox's, with the job's processing and `after_import` under one hold of the
        account's lock (re-entrant): no poll sees the outcome before its errors file is cut."""
        while True:
            job_id = self.state.imports.get()
            try:
                with self.state.lock:
                    job = self.state.jobs[job_id]
                    process_job(self.state, job, job_id)
                    self.state.after_import(job, job_id)
            finally:
                self.state.imports.task_done()


def start_sandbox(state: MultirunState) -> MultirunServer:
    server = MultirunServer(("127.0.0.1", 0), state)
    serve_in_background(server, "sendgrid-sandbox")
    return server


def sandbox_job_status(state: SandboxState, job_id: str) -> str:
    """What SendGrid did with a job: pending (not processed yet), completed, errored or failed."""
    with state.lock:
        job = state.jobs.get(job_id)
        if job is None:
            return "unknown"
        if "status" in job:
            return str(job["status"])
        return str((job.get("outcome") or {}).get("status", "pending"))


# -- the worker's clock and its death -------------------------------------------------------------
class Hooks:
    """The services' clock, and the state store's calls: at the n-th accepted PUT (counted from
    `arm`), run `action` (write a snapshot, put an event), then kill the worker (`crash`: raise
    WorkerCrash; every later clock reading or state-store call raises too, until the host or the
    test sees the crash) or move time past the run's limit (`time_limit`) or do nothing more
    (`event`)."""

    def __init__(self, sandbox: SandboxState) -> None:
        self.sandbox = sandbox
        self.offset = 0.0
        self.dead = False
        self.kind: str | None = None
        self.after = 0
        self.base = 0
        self.action: Callable[[], None] | None = None
        self.fired = ""
        self._lock = threading.Lock()

    def accepted_puts(self) -> int:
        return sum(
            1
            for r in list(self.sandbox.requests)
            if r["method"] == "PUT" and r["path"] == "/v3/marketing/contacts" and r.get("status") == 202
        )

    def arm(self, kind: str, after: int, action: Callable[[], None] | None) -> None:
        with self._lock:
            self.kind, self.after, self.action, self.fired = kind, after, action, ""
            self.base = self.accepted_puts()

    def disarm(self) -> str:
        """Disarm; what fired since `arm` ("" for nothing)."""
        with self._lock:
            fired, self.kind, self.action, self.fired = self.fired, None, None, ""
        return fired

    def clock(self) -> float:
        if self.dead:
            raise WorkerCrash()
        kind, action = None, None
        if self.kind is not None:
            with self._lock:
                if self.kind is not None and self.accepted_puts() - self.base >= self.after:
                    kind, action, self.kind, self.action = self.kind, self.action, None, None
                    self.fired = kind
        if action is not None:
            action()
        if kind == "crash":
            self.dead = True
            raise WorkerCrash()
        if kind == "time_limit":
            self.offset += 10_000_000.0
        return time.monotonic() + self.offset

    def install(self, app: App) -> None:
        app.services.clock = self.clock
        state = app.services.state
        self._guard(state)
        self._guard(state.record)

    def _guard(self, target: object) -> None:
        for name in dir(target):
            if name.startswith("_"):
                continue
            attribute = getattr(target, name)
            if callable(attribute) and not isinstance(attribute, type):
                setattr(target, name, self._unless_dead(attribute))

    def _unless_dead(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.dead:
                raise WorkerCrash()
            return call(*args, **kwargs)

        return guarded


# -- the Functions host, able to deliver a message twice ----------------------------------------
def blob_created(container: str, path: str) -> str:
    return json.dumps(
        {
            "id": str(random.getrandbits(32)),
            "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z",
            "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
            "eventType": "Microsoft.Storage.BlobCreated",
            "eventTime": datetime.now(UTC).isoformat(),
            "dataVersion": "",
            "data": {"api": "PutBlob", "url": f"https://z.blob.core.windows.net/{container}/{path}"},
        }
    )


class MultirunHost(QueueHost):
    """QueueHost with a worker that may die (the crash is seen, the message retried at once), a
    drain that does not wait for delayed messages, and `redeliver_next_run`: the next `run`
    message that ends well is not deleted (the host died before it could) and comes back with
    dequeue_count 2. A duplicate of a finished run must change nothing (docs/design.md,
    "Idempotent messages"); what it changed is added to `violations`."""

    def __init__(
        self, app: App, monkeypatch: pytest.MonkeyPatch, hooks: Hooks, sandbox: MultirunState, observe: Callable[[str], None]
    ) -> None:
        super().__init__(app, monkeypatch, retry_delay=0)
        self.app = app
        self.hooks = hooks
        self.sandbox = sandbox
        self.observe = observe
        self.redeliver_next_run = False
        self.redelivered: dict[str, str] = {}  # message id -> run id
        self.violations: list[str] = []

    def drain_visible(self, limit: int = 80) -> None:
        """Run the messages visible now, and those they make visible at once; not delayed ones."""
        for _ in range(limit):
            try:
                received = list(self.queue.receive_messages(max_messages=1, visibility_timeout=600))
            except Exception:  # noqa: BLE001 - no queue yet: nothing was sent
                return
            if not received:
                return
            self._invoke(received[0])
        raise TimeoutError(f"the run queue kept giving work after {limit} messages: {self.invocations[-10:]}")

    def drain_all(self, timeout: float = 8.0) -> None:
        """Run messages until none is left, delayed ones included, or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain_visible()
            if not self.waiting():
                return
            time.sleep(0.1)

    def deliver_now(self, text: str) -> None:
        """A message taken by another instance of the app while this one works (an event that
        comes during a run): handled at once, on this thread; what it queues goes on the queue."""
        message = func_queue.QueueMessage(id=f"other-{random.getrandbits(32)}", body=text.encode(), dequeue_count=1)
        export_worker.main(message)
        self.invocations.append(Invocation(*describe(text.encode()), 1, "done by another instance"))

    def writes(self) -> int:
        return sum(1 for r in list(self.sandbox.requests) if r["method"] in ("PUT", "DELETE"))

    def _invoke(self, message: Any) -> None:
        body = str(message.content).encode()
        kind, export = describe(body)
        run_id = ""
        if kind != "event":
            run_id = str(json.loads(body).get("run_id", ""))
        again = self.redelivered.get(message.id)
        before = (self.app.services.state.report(EXPORT, again), self.writes()) if again else None
        qm = func_queue.QueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt
        )
        try:
            export_worker.main(qm)
        except (Exception, WorkerCrash):
            self.hooks.dead = False  # the host saw the worker go; its message comes back
            outcome = self.failed(message)
        else:
            if self.redeliver_next_run and kind == "run" and again is None:
                self.redeliver_next_run = False
                self.redelivered[message.id] = run_id
                self.queue.update_message(message, visibility_timeout=0)  # the host died before deleting it
                outcome = "delivered again"
            else:
                self.queue.delete_message(message)
                outcome = "done"
        self.invocations.append(Invocation(kind, export, message.dequeue_count, outcome))
        if before is not None and again:
            self._check_duplicate(again, before[0], before[1], message.dequeue_count)
        if run_id:
            self.observe(run_id)

    def _check_duplicate(self, run_id: str, before: dict[str, Any] | None, writes: int, dequeue_count: int) -> None:
        if before is None or before.get("status") not in FINAL or before.get("resumable") or before.get("abandoned"):
            return  # not finished when it came again: going on with it is right
        after = self.app.services.state.report(EXPORT, run_id) or {}
        changed = [
            key for key in ("started_at", "status", "jobs", "plan", "counts", "source") if after.get(key) != before.get(key)
        ]
        made = self.writes() - writes
        if changed or made:
            self.violations.append(
                f"run {run_id} had finished ({before.get('status')}); its `run` message delivered again "
                f"(dequeue_count {dequeue_count}) ran it again: {made} SendGrid write(s), report changed in "
                f"{', '.join(changed) or 'nothing'} (status now {after.get('status')}, plan {after.get('plan')})"
            )


# -- snapshots ------------------------------------------------------------------------------------
Values = dict[str, str]  # column -> canonical value ("" for none)


@dataclass
class Snapshot:
    label: str
    members: dict[str, Values]  # the logical segment this snapshot renders
    partitions: list[list[list[str]]]
    valid: dict[str, Values] = field(default_factory=dict)  # email -> the first valid row's values
    kept: set[str] = field(default_factory=set)  # valid emails of rows rejected for a value
    structural: int = 0  # rows rejected for the file's sake: mirror removals are held back
    duplicates: int = 0
    rejected: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    when: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    etag: str = ""

    def describe(self) -> str:
        noise = ", ".join(f"{n} {op}" for op, n in sorted(self.ops.items()) if n)
        return (
            f"snapshot {self.label}: {len(self.valid)} valid, {self.rejected} rejected ({self.structural} structural), "
            f"{self.duplicates} duplicate(s), {len(self.kept - set(self.valid))} kept; {noise or 'no change'}"
        )


def classify(snapshot: Snapshot) -> None:
    """The app's rules for rows (docs/design.md, "What happens to each row"), on rows this module
    made: the wrong number of columns and NUL bytes are structural; an email is valid when it is
    one of the pool's (lower-cased and trimmed); a valid email whose Value is not a number is a
    rejected row that keeps its contact; among valid rows the first of each email wins."""
    valid: dict[str, Values] = {}
    for rows in snapshot.partitions:
        for row in rows:
            if len(row) != len(COLUMNS):
                snapshot.structural += 1
                snapshot.rejected += 1
                continue
            values = dict(zip(COLUMNS, row, strict=True))
            email = values["EMail"].strip().lower()
            if email not in POOL_EMAILS:
                snapshot.rejected += 1
                continue
            if any("\x00" in v for v in row):
                snapshot.structural += 1
                snapshot.rejected += 1
                snapshot.kept.add(email)
                continue
            number = values["Value"].strip()
            if number and not number.isdecimal():
                snapshot.rejected += 1
                snapshot.kept.add(email)
                continue
            if email in valid:
                snapshot.duplicates += 1
                continue
            valid[email] = {column: values[column].strip() for column in KEYS.values()}
    snapshot.valid = valid


class Generator:
    """Makes each snapshot from the one before, from one seeded random.Random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.members: dict[str, Values] = {}
        self.used: list[str] = []
        self.count = 0

    def values(self) -> Values:
        rng = self.rng
        values = {column: rng.choice(words) for column, words in VOCABULARY.items()}
        values["Value"] = str(rng.randint(1, 9999))
        return values

    def other_value(self, column: str, current: str) -> str:
        if column == "Value":
            return str(self.rng.randint(1, 9999))
        return self.rng.choice([w for w in VOCABULARY[column] if w != current])

    def pick(self, candidates: list[str], n: int, focus: set[str]) -> list[str]:
        """n of `candidates` (fewer if there are not so many), half of them from `focus`."""
        rng = self.rng
        first = [e for e in candidates if e in focus]
        rest = [e for e in candidates if e not in focus]
        rng.shuffle(first)
        rng.shuffle(rest)
        n = max(0, n)
        from_focus = min(len(first), (n + 1) // 2)
        chosen = first[:from_focus] + rest[: n - from_focus]
        return chosen + first[from_focus : from_focus + n - len(chosen)]

    def next(self, label: str, focus: set[str] | None = None) -> Snapshot:
        rng = self.rng
        focus = focus or set()
        members = {e: dict(v) for e, v in self.members.items()}
        ops: Counter[str] = Counter()
        if not members:  # the first snapshot
            for email in rng.sample(POOL_EMAILS, rng.randint(14, 24)):
                members[email] = self.values()
                if rng.random() < 0.3:
                    members[email][rng.choice(list(KEYS.values()))] = ""
            ops["initial"] = len(members)
        else:
            current = list(members)
            removes = rng.choice((0, 0, 1, 1, 2, 3, 4))
            if rng.random() < 0.07:
                removes = max(removes, len(current) // 3)  # a big shrink: mirror's removal guard
            for email in self.pick(current, min(removes, len(current) - 3), focus):
                del members[email]
                ops["removed"] += 1
            former = [e for e in self.used if e not in members]
            fresh = [e for e in POOL_EMAILS if e not in self.used]
            for _ in range(rng.choice((0, 1, 2, 3, 4, 6))):
                rejoin = former and (rng.random() < 0.45 or not fresh)
                pool = former if rejoin else fresh
                if not pool:
                    break
                email = pool.pop(rng.randrange(len(pool)))
                members[email] = self.values()
                if rng.random() < (0.6 if rejoin else 0.25):  # a rejoiner often comes back with less
                    for column in rng.sample(list(KEYS.values()), rng.randint(1, 3)):
                        members[email][column] = ""
                ops["rejoined" if rejoin else "added"] += 1
            stay = [e for e in members if e in current]
            for email in self.pick(stay, rng.choice((0, 1, 2, 3, 5)), focus):
                for column in rng.sample(list(KEYS.values()), rng.randint(1, 2)):
                    members[email][column] = self.other_value(column, members[email][column])
                ops["changed"] += 1
            for email in self.pick(stay, rng.choice((0, 0, 1, 2, 3)), focus):
                filled = [c for c, v in members[email].items() if v]
                for column in rng.sample(filled, min(len(filled), rng.randint(1, 2))):
                    members[email][column] = ""
                ops["emptied"] += 1
            for email in self.pick([e for e in stay if "" in members[e].values()], rng.choice((0, 1, 2)), set()):
                column = rng.choice([c for c, v in members[email].items() if not v])
                members[email][column] = self.other_value(column, "")
                ops["refilled"] += 1
        for email in members:
            if email not in self.used:
                self.used.append(email)
        self.members = members
        self.count += 1
        snapshot = Snapshot(label, members, self.rows(members, ops), ops=ops)
        snapshot.when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=self.count)
        classify(snapshot)
        return snapshot

    def rows(self, members: dict[str, Values], ops: Counter[str]) -> list[list[list[str]]]:
        rng = self.rng
        order = list(members)
        if rng.random() < 0.3:
            rng.shuffle(order)
        rows = [self.render(email, members[email]) for email in order]
        if order and rng.random() < 0.3:  # a row rejected for a bad number: its contact is kept
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(len(rows))
                rows[at][VALUE] = rng.choice(BAD_NUMBERS)
                ops["bad number"] += 1
                email = rows[at][EMAIL].strip().lower()
                if email in members and rng.random() < 0.4:  # ...and a valid row of the same email after it
                    rows.insert(rng.randint(at + 1, len(rows)), self.render(email, members[email]))
                    ops["bad number, then valid"] += 1
        for _ in range(rng.choice((0, 0, 1, 2)) if order else 0):  # the same email again: the first row wins
            at = rng.randrange(len(rows))
            email = rows[at][EMAIL].strip().lower() if len(rows[at]) == len(COLUMNS) else ""
            if email in members:
                rows.insert(rng.randint(at + 1, len(rows)), self.render(email, self.values(), upper=True))
                ops["duplicate"] += 1
        for _ in range(rng.choice((0, 0, 1, 2))):
            n = rng.randint(900, 999)
            bad = rng.choice((f"person{n}example.com", f"person{n}@example", f"person{n}@@example.com", "", f"per son{n}@x.io"))
            rows.insert(rng.randint(0, len(rows)), self.render(bad, self.values(), exact=True))
            ops["invalid email"] += 1
        if rows and rng.random() < 0.2:  # the wrong number of columns
            at = rng.randrange(len(rows))
            ragged = rows[at][:5] if rng.random() < 0.5 else rows[at] + ["extra"]
            if rng.random() < 0.5:
                rows[at] = ragged  # a member's own row: it is not in the valid set this time
            else:
                rows.insert(at, ragged)
            ops["ragged"] += 1
        if rows and rng.random() < 0.07:
            at = rng.randrange(len(rows))
            if len(rows[at]) == len(COLUMNS):
                rows[at][COLUMNS.index("FirstName")] = "Nul\x00Byte"
                ops["NUL byte"] += 1
        cuts = sorted(rng.sample(range(len(rows) + 1), rng.choice((0, 0, 1, 2)))) if rows else []
        partitions = [rows[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
        if rng.random() < 0.1:
            partitions.insert(rng.randint(0, len(partitions)), [])
        return partitions

    def render(self, email: str, values: Values, *, upper: bool = False, exact: bool = False) -> list[str]:
        rng = self.rng
        shown = email
        if not exact:
            if upper or rng.random() < 0.1:
                shown = email.upper()
            if rng.random() < 0.05:
                shown = f" {shown} "
        row = {"CustomerId": f"C{rng.randint(1, 10**6)}", "EMail": shown}
        for column, value in values.items():
            if not value:
                row[column] = rng.choice(("", "", "   "))
            else:
                row[column] = f" {value} " if rng.random() < 0.08 else value
        return [row[c] for c in COLUMNS]


# -- the truth ---------------------------------------------------------------------------------------
@dataclass
class Expect:
    """What SendGrid may hold of one email: the contact may exist (True) or not (False), may be on
    the export's list or not, and each mapped field may hold one of `fields[key]` (None: no value).
    `set_by_export[key]`: "yes" when this export certainly set the field, "maybe" when only a run
    that was interrupted may have."""

    exists: set[bool]
    member: set[bool]
    fields: dict[str, set[Any]]
    lists: set[str] = field(default_factory=set)  # other lists it is on (others put it there)
    set_by_export: dict[str, str] = field(default_factory=dict)


def field_value(key: str, canonical: str) -> Any:
    if not canonical:
        return None
    return int(canonical) if key in NUMBER_KEYS else canonical


class Truth:
    def __init__(self, mode: str, base: dict[str, dict[str, Any]], base_lists: dict[str, set[str]]) -> None:
        self.mode = mode
        self.base = base  # email -> field key -> value others keep in SendGrid (shared contacts)
        self.numbers: dict[str, set[int]] = {}  # every number an email had in a valid row so far
        self.expect: dict[str, Expect] = {}
        for email in POOL_EMAILS:
            fields = {key: {base.get(email, {}).get(key)} for key in KEYS}
            exists = email in base
            self.expect[email] = Expect({exists}, {False}, fields, set(base_lists.get(email, set())))

    def note_numbers(self, snapshot: Snapshot) -> None:
        for email, values in snapshot.valid.items():
            if values["Value"]:
                self.numbers.setdefault(email, set()).add(int(values["Value"]))

    def interrupted(self, snapshot: Snapshot) -> None:
        """A run of `snapshot` may have sent some of its contacts, and (mirror, a clean read) may
        have unlinked some leavers, but the snapshot never settled."""
        self.note_numbers(snapshot)
        for email, values in snapshot.valid.items():
            expect = self.expect[email]
            expect.exists.add(True)
            expect.member.add(True)
            for key, column in KEYS.items():
                value = field_value(key, values[column])
                if value is not None:
                    expect.fields[key].add(value)
                    if expect.set_by_export.get(key) != "yes":
                        expect.set_by_export[key] = "maybe"
                elif key in TEXT_KEYS and expect.set_by_export.get(key):
                    expect.fields[key].add(None)  # cleared by that run
        if self.mode == "mirror" and not snapshot.structural:
            for email, expect in self.expect.items():
                if email not in snapshot.valid and email not in snapshot.kept:
                    expect.member.add(False)

    def settled(self, snapshot: Snapshot) -> dict[str, Expect]:
        """What SendGrid must hold once `snapshot` settled (not yet taken as the truth)."""
        self.note_numbers(snapshot)
        after = copy.deepcopy(self.expect)
        for email, expect in after.items():
            values = snapshot.valid.get(email)
            if values is None:
                held = snapshot.structural or email in snapshot.kept
                if self.mode == "mirror" and not held:
                    expect.member = {False}
                continue
            expect.exists, expect.member = {True}, {True}
            for key, column in KEYS.items():
                value = field_value(key, values[column])
                others = self.base.get(email, {}).get(key)
                if value is not None:
                    expect.fields[key] = {value}
                    expect.set_by_export[key] = "yes"
                elif key in NUMBER_KEYS:  # not cleared (docs/design.md): what it held stays
                    expect.fields[key] = {None, others} | self.numbers.get(email, set())
                elif expect.set_by_export.get(key) == "yes":
                    expect.fields[key] = {None}
                elif expect.set_by_export.get(key) == "maybe":
                    expect.fields[key] = {None, others}
                else:
                    expect.fields[key] = {others}
        return after

    def differences(self, after: dict[str, Expect], contacts: dict[str, dict[str, Any]], ids: dict[str, str]) -> list[str]:
        found: list[str] = []
        for email in POOL_EMAILS:
            expect = after[email]
            contact = contacts.get(email)
            if contact is None:
                if False not in expect.exists:
                    found.append(f"{email}: missing from SendGrid (expected on the list: {_word(expect.member)})")
                continue
            if True not in expect.exists:
                found.append(f"{email}: in SendGrid, but no snapshot ever had it as a valid row")
                continue
            lists = set(contact["list_ids"])
            member = LIST_ID in lists
            if member not in expect.member:
                found.append(
                    f"{email}: {'on' if member else 'not on'} the export's list, expected {'on' if not member else 'off'} it"
                )
            if lists - {LIST_ID} != expect.lists:
                found.append(
                    f"{email}: on lists {sorted(lists - {LIST_ID})} besides the export's, expected {sorted(expect.lists)}"
                )
            for key in KEYS:
                actual = contact.get("custom_fields", {}).get(ids[key]) if key in ids else contact.get(key)
                actual = None if actual == "" else actual
                if actual not in expect.fields[key]:
                    wanted = " or ".join(repr(v) for v in sorted(expect.fields[key], key=repr))
                    found.append(f"{email}: {key} is {actual!r}, expected {wanted}")
        return found


def _word(values: Iterable[bool]) -> str:
    return "/".join(sorted("yes" if v else "no" for v in values))


def upsert_contacts(url: str, list_ids: list[str], contacts: list[dict[str, Any]]) -> None:
    answer = requests.put(
        f"{url}/v3/marketing/contacts",
        json={"list_ids": list_ids, "contacts": contacts},
        timeout=10,
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert answer.status_code == 202, answer.text


def errors_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- one scenario: a seed and a mode -------------------------------------------------------------
@dataclass
class StepPlan:
    path: str  # inline | queue
    trigger: str  # post | timer | event (queue)
    storm: bool = False
    faults: list[Fault] = field(default_factory=list)
    late: bool = False
    fail_imports: int = 0  # contacts whose import fails (SendGrid's errors file names them)
    short_errors: bool = False  # ...and the errors file names only the first
    fail_job: bool = False  # the next job fails whole
    interrupt: str = ""  # crash | time_limit | event
    interrupt_after: int = 1  # accepted PUTs before it
    new_snapshot: bool = False  # the interruption writes the next snapshot first
    redeliver: bool = False

    def describe(self) -> str:
        parts = [f"{self.path}" + (f"/{self.trigger}" if self.path == "queue" else "")]
        if self.storm:
            parts.append("429 storm (2 requests per 0.15 s window)")
        for f in self.faults:
            what = "dropped connection" if f.drop else str(f.status)
            parts.append(f"{what} x{f.times} on {f.method} {f.path}")
        if self.late:
            parts.append("late jobs")
        if self.fail_imports:
            parts.append(
                f"{self.fail_imports} import failure(s)" + (" (errors file cut to the first)" if self.short_errors else "")
            )
        if self.fail_job:
            parts.append("a job failing whole")
        if self.interrupt:
            then = " after writing the next snapshot" + (" and its event" if self.interrupt == "event" else "")
            parts.append(f"{self.interrupt} at accepted PUT #{self.interrupt_after}" + (then if self.new_snapshot else ""))
        if self.redeliver:
            parts.append("run message delivered twice")
        return ", ".join(parts)


class Scenario:
    def __init__(
        self,
        *,
        seed: int,
        mode: str,
        steps: int,
        app: App,
        server: MultirunServer,
        container: ContainerClient,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        self.seed, self.mode, self.steps = seed, mode, steps
        self.rng = random.Random(f"multirun {seed} {mode}")
        self.runtime = random.Random(f"multirun runtime {seed} {mode}")  # choices that follow what happened
        self.app, self.server, self.state, self.container = app, server, server.state, container
        self.hooks = Hooks(self.state)
        self.hooks.install(app)
        self.host = MultirunHost(app, monkeypatch, self.hooks, self.state, self.observe_run)
        self.generator = Generator(self.rng)
        self.ids = {name: next(f["id"] for f in self.state.custom_fields.values() if f["name"] == name) for name in CUSTOM_FIELDS}
        self.claims: list[str] = []
        self.story: list[str] = []
        self.others: dict[str, dict[str, Any]] = {}
        self.truth = Truth(mode, {}, {})
        self.written: set[str] = set()
        self.step_number = 0
        self.snapshots: list[Snapshot] = []
        self.interrupted: set[str] = set()  # labels of snapshots that never settled

    # -- the world before the first run ---------------------------------------------------------
    def seed_others(self) -> None:
        """Others' contacts: on the export's list, on another list, on both; and two emails of the
        pool already in SendGrid on another list with values others keep (the export may later
        deliver them: what it never set stays)."""
        tier, value = self.ids["loyalty_tier"], self.ids["lifetime_value"]
        url = self.server.url
        upsert_contacts(url, [LIST_ID], [{"email": "manual1@example.org", "first_name": "Manual", "city": "Elsewhere"}])
        upsert_contacts(url, [LIST_ID], [{"email": "manual2@example.org", "custom_fields": {tier: "VIP", value: 5}}])
        upsert_contacts(url, [OTHER_LIST_ID], [{"email": "other1@example.org", "last_name": "Other", "country": "Atlantis"}])
        upsert_contacts(url, [LIST_ID, OTHER_LIST_ID], [{"email": "both1@example.org", "postal_code": "9999-001"}])
        shared = self.rng.sample(POOL_EMAILS[2:40], 2)
        kept = {"postal_code": "0000-000", "country": "Atlantis", "loyalty_tier": "Legacy", "lifetime_value": 7}
        upsert_contacts(
            url,
            [OTHER_LIST_ID],
            [
                {
                    "email": email,
                    "postal_code": kept["postal_code"],
                    "country": kept["country"],
                    "custom_fields": {tier: kept["loyalty_tier"], value: kept["lifetime_value"]},
                }
                for email in shared
            ],
        )
        self.state.imports.join()
        with self.state.lock:
            self.others = {e: copy.deepcopy(c) for e, c in self.state.contacts.items() if e.endswith("@example.org")}
        self.truth = Truth(self.mode, {e: dict(kept) for e in shared}, {e: {OTHER_LIST_ID} for e in shared})
        self.story.append(f"others: {sorted(self.others)}; pool emails already in SendGrid (another list): {shared}")

    # -- what a step does ----------------------------------------------------------------------
    def plan(self) -> StepPlan:
        rng = self.rng
        path = "queue" if rng.random() < 0.5 else "inline"
        plan = StepPlan(path, rng.choice(("post", "post", "timer", "event")) if path == "queue" else "post")
        plan.storm = rng.random() < 0.15
        if rng.random() < 0.5:
            for _ in range(rng.randint(1, 3)):
                method, where = rng.choice(
                    (
                        ("PUT", "/v3/marketing/contacts"),
                        ("PUT", "/v3/marketing/contacts"),
                        ("POST", "/v3/marketing/contacts/search"),
                        ("DELETE", "/v3/marketing/lists/"),
                        ("GET", "/v3/marketing/contacts/imports/"),
                    )
                )
                kind = rng.choice(("503", "500", "502", "429", "drop"))
                if kind == "429":
                    times = rng.randint(2, 4)  # a storm of 429s
                else:
                    times = 6 if method == "PUT" and rng.random() < 0.15 else rng.randint(1, 2)  # 6: the request gives up
                fault = Fault(method, where, status=0 if kind == "drop" else int(kind), times=times, drop=kind == "drop")
                plan.faults.append(fault)
        plan.late = rng.random() < 0.3
        if rng.random() < 0.35:
            plan.fail_imports = rng.choice((1, 2, 2, 3))
            plan.short_errors = plan.fail_imports > 1 and rng.random() < 0.5
        plan.fail_job = rng.random() < 0.1
        if rng.random() < 0.4:
            plan.interrupt = rng.choice(("crash", "crash", "time_limit", "event"))
            plan.interrupt_after = rng.choice((1, 1, 2))
            plan.new_snapshot = plan.interrupt == "event" or rng.random() < 0.6
        plan.redeliver = path == "queue" and rng.random() < 0.35
        return plan

    def failing_emails(self, snapshot: Snapshot, n: int) -> list[str]:
        """n contacts next to each other among those the run is likely to send (new or changed),
        so that they tend to share an import job."""
        if not n:
            return []
        likely = [e for e, values in snapshot.valid.items() if not self._delivered_as(e, values)]
        if not likely:
            return []
        start = self.rng.randrange(len(likely))
        return likely[start : start + n]

    def _delivered_as(self, email: str, values: Values) -> bool:
        expect = self.truth.expect[email]
        if expect.member != {True}:
            return False
        return all(expect.fields[key] == {field_value(key, values[column])} for key, column in KEYS.items())

    def run(self) -> None:
        self.seed_others()
        for number in range(1, self.steps + 1):
            self.step_number = number
            self.step(number)
        assert not self.claims, self.failure("broken promises of the run engine and the run reports", self.claims)

    def step(self, number: int) -> None:
        plan = self.plan()
        first = self.generator.next(str(number))
        second = None
        if plan.interrupt and plan.new_snapshot:
            focus = {e for e, v in first.valid.items() if not self._delivered_as(e, v)}
            second = self.generator.next(f"{number}b", focus)
        failing = self.failing_emails(first, plan.fail_imports)
        self.story.append(
            f"step {number}: {plan.describe()}; {first.describe()}"
            + (f"; then {second.describe()}" if second else "")
            + (f"; import fails for {failing}" if failing else "")
        )
        self.write(first)
        self.arm(plan, second, failing)
        self.first_run(plan)
        fired = self.hooks.disarm()
        if fired:
            self.story.append(f"  the {fired} happened")
        if second is not None and second.label not in self.written:
            self.write(second)  # the interruption did not come: the next snapshot comes anyway
        self.disarm()
        target = second or first
        if second is not None:
            self.truth.interrupted(first)
            self.interrupted.add(first.label)
        self.settle(plan, target)
        self.check(target)

    def write(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)
        write(self.container, snapshot.partitions, when=snapshot.when)
        props = self.container.get_blob_client(f"{FOLDER}/model.json").get_blob_properties()
        snapshot.etag = str(props.etag).strip('"')
        self.written.add(snapshot.label)

    def arm(self, plan: StepPlan, second: Snapshot | None, failing: list[str]) -> None:
        state = self.state
        with state.lock:
            if plan.storm:
                state.rate_limit, state.rate_window = 2, 0.15
                state.windows.clear()
            state.faults.extend(Fault(f.method, f.path, f.status, f.times, f.drop) for f in plan.faults)
            state.job_pending_polls = 1000 if plan.late else 1
            state.import_error_emails = set(failing)
            state.fail_jobs = 1 if plan.fail_job else 0
            state.short_errors = 1 if plan.short_errors else 0
        if plan.interrupt:
            action = None
            if second is not None:
                event = plan.interrupt == "event"

                def action() -> None:
                    self.write(second)
                    if event:  # Event Grid's message, taken by another instance during the run
                        self.host.deliver_now(blob_created(self.container.container_name, f"{FOLDER}/model.json"))

            self.hooks.arm(plan.interrupt, plan.interrupt_after, action)
        self.host.redeliver_next_run = plan.redeliver

    def disarm(self) -> None:
        """The faults of a step's first run end; what SendGrid accepted meanwhile is applied."""
        state = self.state
        self.host.redeliver_next_run = False
        state.imports.join()
        with state.lock:
            state.faults.clear()
            state.rate_limit, state.rate_window = None, RATE_WINDOW
            state.windows.clear()
            state.job_pending_polls = 1
            state.import_error_emails = set()
            state.fail_jobs = 0
            state.short_errors = 0
        if state.cut_jobs:
            self.story.append(f"  errors file cut short for job(s) {state.cut_jobs}")
            state.cut_jobs.clear()

    def first_run(self, plan: StepPlan) -> None:
        if plan.path == "inline":
            self.inline()
        else:
            self.queued(plan.trigger)

    # -- the app's entry points -----------------------------------------------------------------
    def inline(self, body: bytes = b"") -> None:
        """POST .../run with {"wait": true}: the run in this invocation."""
        try:
            response = run(self.app, EXPORT, body)
        except WorkerCrash:
            self.hooks.dead = False
            return
        report = response.body.get("report") if "report" in response.body else response.body
        if isinstance(report, dict) and "run_id" in report:
            self.claim(report, "inline run")

    def queued(self, trigger: str, body: bytes = b"") -> None:
        """A run through the run queue: POST (202), the timer or an Event Grid event; the worker
        runs what is visible now (delayed confirm messages come when their time comes)."""
        if trigger == "timer":
            handlers.enqueue_all(self.app)
        elif trigger == "event":
            self.host.put(blob_created(self.container.container_name, f"{FOLDER}/model.json"))
        else:
            answer = routes.handle(self.app, "POST", EXPORT, "run", body)
            if answer.status == 409:  # a run is queued or going on: let it go first
                self.host.drain_visible()
                answer = routes.handle(self.app, "POST", EXPORT, "run", body)
        self.host.drain_visible()

    def status(self) -> dict[str, Any] | None:
        answer = routes.handle(self.app, "GET", EXPORT, "status")
        if answer.status != 200:
            return None
        self.claim(answer.body, "status endpoint")
        return answer.body

    def observe_run(self, run_id: str) -> None:
        report = self.app.services.state.report(EXPORT, run_id)
        if report is not None:
            self.claim(report, "after a queue message")

    def claim(self, report: dict[str, Any], seen: str) -> None:
        """A report must never say succeeded while a contact it planned is not applied: each of its
        import jobs completed in SendGrid."""
        if report.get("status") != "succeeded" or report.get("dry_run"):
            return
        for job in report.get("jobs") or []:
            if not isinstance(job, dict):
                continue
            job_id = str(job.get("job_id"))
            actual = sandbox_job_status(self.state, job_id)
            if actual == "pending":  # accepted, not processed yet: let SendGrid's side finish it
                self.state.imports.join()
                actual = sandbox_job_status(self.state, job_id)
            if actual == "completed":
                continue
            said = job.get("status")
            what = (
                f"its import job {job_id} is {actual} in SendGrid (the report says {said})"
                if actual != "pending"
                else f"its import job {job_id} is still pending (the report says {said})"
            )
            failed = self.state.not_applied.get(job_id, [])
            line = f"step {self.step_number}, {seen}: run {report.get('run_id')} says succeeded while {what}" + (
                f"; not applied: {failed}" if failed else ""
            )
            if line not in self.claims:
                self.claims.append(line)

    # -- settling --------------------------------------------------------------------------------
    def unsettled(self, latest: dict[str, Any] | None, target: Snapshot) -> str | None:
        """Why the export is not settled on `target` yet (None: it is)."""
        if latest is None:
            return "no run report yet"
        status = latest.get("status")
        if (latest.get("source") or {}).get("etag") != target.etag:
            return f"the latest run ({status}) did not read the latest snapshot"
        error = latest.get("error")
        if isinstance(error, dict):
            return f"the latest run ended with {error.get('code')}"
        if any(
            isinstance(j, dict) and j.get("status") not in ("completed", "errored", "failed") for j in latest.get("jobs") or []
        ):
            return f"jobs pending ({status})"
        if status not in FINAL:
            return f"the latest run is {status}"
        if latest.get("resumable"):
            return "the latest run is resumable"
        if (latest.get("settled") or {}).get("pending"):
            return "earlier runs' jobs still pending in the record"
        if (latest.get("counts") or {}).get("failed"):
            return f"{latest['counts']['failed']} contact(s) failed in their import"
        if status == "partial" and not (latest.get("held_back") and target.structural):
            return "the latest run is partial"
        if status == "failed":
            return "the latest run failed"
        return None

    def settle(self, plan: StepPlan, target: Snapshot) -> None:
        """Let the export settle on `target` as its users and the platform would: the status
        endpoint (it asks SendGrid about pending jobs again), the confirm messages when their
        time comes, the queue's retries, and further runs (POST, the timer, an event; with
        {"confirm_removals": true} after a removal_guard refusal, as an operator would)."""
        why: str | None = None
        waited = 0
        for round_ in range(MAX_SETTLE_ROUNDS):
            latest = self.status()
            why = self.unsettled(latest, target)
            if why is None:
                return
            self.story.append(f"  settle {round_ + 1}: {why}")
            status = (latest or {}).get("status")
            if plan.path == "queue" and status in ("queued", "running") and self.host.waiting():
                self.host.drain_all()  # its message (a retry, a continuation) is still to come
                continue
            if why.startswith("jobs pending") and status not in ("queued", "running") and waited < 2:
                waited += 1  # only time passes: SendGrid finishes, someone asks again
                if plan.path == "queue" and self.runtime.random() < 0.5:
                    self.host.drain_all()  # the confirm messages come
                    continue
                if self.runtime.random() < 0.6:
                    continue  # the status endpoint asks SendGrid again
            body = b'{"confirm_removals": true}' if "removal_guard" in why else b""
            if plan.path == "inline":
                self.inline(body)
            else:
                trigger = "post" if body or self.runtime.random() < 0.6 else self.runtime.choice(("timer", "event"))
                self.queued(trigger, body)
        raise AssertionError(self.failure(f"the export did not settle in {MAX_SETTLE_ROUNDS} rounds", [str(why)]))

    # -- the check ---------------------------------------------------------------------------------
    def check(self, target: Snapshot) -> None:
        self.state.imports.join()
        with self.state.lock:
            contacts = copy.deepcopy(self.state.contacts)
        after = self.truth.settled(target)
        found = self.truth.differences(after, contacts, self.ids)
        for email, before in self.others.items():
            now = contacts.get(email)
            if now != before:
                found.append(f"{email} (someone else's contact) changed: {before} -> {now}")
        strangers = sorted(set(contacts) - set(POOL_EMAILS) - set(self.others))
        if strangers:
            found.append(f"contacts no snapshot had: {strangers[:5]}")
        self.claims += [f"step {self.step_number}: {v}" for v in self.host.violations if v not in self.claims]
        self.host.violations = []
        for report in self.reports():
            self.claim(report, "settled")
        if found:
            emails = list(dict.fromkeys(line.split(":", 1)[0] for line in found if line.split(":", 1)[0] in POOL_EMAILS))
            found += [self.history(email, found) for email in emails[:3]]
        assert not found, self.failure("SendGrid differs from the latest snapshot", found)
        self.truth.expect = after

    def history(self, email: str, found: list[str]) -> str:
        """The email's values in every snapshot written so far (the keys that differ now), to
        see what SendGrid should have followed."""
        keys = [key for key in KEYS if any(line.startswith(f"{email}: {key} ") for line in found)]
        shown = []
        for snapshot in self.snapshots:
            values = snapshot.valid.get(email)
            if values is None:
                state = "kept" if email in snapshot.kept else "absent"
                if snapshot.structural:
                    state += " (removals held back)"
            else:
                state = ", ".join(f"{key}={values[KEYS[key]]!r}" for key in keys) or "in"
            star = "*" if snapshot.label in self.interrupted else ""
            shown.append(f"{snapshot.label}{star}: {state}")
        base = " (in SendGrid before the first run)" if email in self.truth.base else ""
        failed = []
        for job_id, emails in self.state.not_applied.items():
            if email in emails:
                cut = ", its errors file leaves it out" if email in self.state.left_out.get(job_id, []) else ""
                failed.append(f"job {job_id[:8]} did not apply it{cut}")
        notes = f" [{'; '.join(failed)}]" if failed else ""
        return f"history of {email}{base} (*: replaced by the next snapshot before it settled){notes}: " + "; ".join(shown)

    def reports(self) -> list[dict[str, Any]]:
        listing = routes.handle(self.app, "GET", EXPORT, "runs", query={"limit": "200"})
        found = []
        for entry in listing.body.get("runs", []):
            report = self.app.services.state.report(EXPORT, str(entry.get("run_id")))
            if report is not None:
                found.append(report)
        return found

    def failure(self, what: str, details: list[str]) -> str:
        first = [d for d in details if not d.startswith("history of ")][:6]
        more = len([d for d in details if not d.startswith("history of ")]) - len(first)
        shown = "\n    ".join(first + [d for d in details if d.startswith("history of ")])
        shown += f"\n    ... and {more} more" if more > 0 else ""
        claims = ""
        if self.claims and details is not self.claims:
            claims = f"\n  and broken promises of the run engine and the run reports ({len(self.claims)}):\n    "
            claims += "\n    ".join(self.claims[:4])
        story = "\n    ".join(self.story[-30:])
        return (
            f"seed {self.seed}, mode {self.mode}, step {self.step_number}: {what} ({len(details)}):\n    {shown}{claims}\n"
            f"  what happened (MULTIRUN_ONLY={self.seed} reruns this seed):\n    {story}"
        )
