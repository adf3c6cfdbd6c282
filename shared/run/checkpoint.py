"""How far an unfinished run got, and resuming from there.

A checkpoint is saved (by the sender thread) after every accepted request. It applies to a later
run only when that run would send the same contacts in the same order: the same snapshot,
definition, delivered record and full_refresh (its `identity`). The JSON keys are a stored
contract: a checkpoint written by an earlier release must still resume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from shared.definitions import ExportDefinition
from shared.report import RunReport
from shared.sendgrid import jobs
from shared.sendgrid.jobs import JobEntry
from shared.source.blob import Segment

log = logging.getLogger(__name__)

REFUSED = "rejected by SendGrid"


def identity(segment: Segment, definition: ExportDefinition, record_etag: str, full_refresh: bool) -> dict[str, Any]:
    """What must be equal for a checkpoint to apply: the same sends in the same order."""
    return {
        "snapshot": segment.snapshot_id,
        "definition": definition.fingerprint(),
        "record": record_etag,
        "full_refresh": full_refresh,
    }


@dataclass
class Checkpoint:
    identity: dict[str, Any]
    run_id: str  # the run that started the work (a resumed run keeps its first run's id)
    position: int  # contacts before this spill position were accepted (or refused)
    sent: int
    refused: int = 0
    jobs: list[JobEntry] = field(default_factory=list)
    ranges: dict[str, list[int]] = field(default_factory=dict)  # job id -> [first, end) positions
    refused_positions: list[int] = field(default_factory=list)  # refused inside accepted ranges (added later)

    def to_json(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "run_id": self.run_id,
            "position": self.position,
            "sent": self.sent,
            "refused": self.refused,
            "jobs": self.jobs,
            "ranges": self.ranges,
            "refused_positions": self.refused_positions,
        }

    @classmethod
    def from_json(cls, data: object) -> Checkpoint | None:
        """A checkpoint, or None for anything that is not one (it is then ignored)."""
        if not isinstance(data, dict):
            return None
        try:
            checkpoint = cls(
                identity=dict(data["identity"]),
                run_id=str(data["run_id"]),
                position=int(data["position"]),
                sent=int(data["sent"]),
                refused=int(data.get("refused", 0)),
                jobs=[cast(JobEntry, job) for job in data.get("jobs", []) if isinstance(job, dict) and "job_id" in job],
                ranges={str(k): [int(v[0]), int(v[1])] for k, v in dict(data.get("ranges", {})).items()},
                refused_positions=[int(p) for p in data.get("refused_positions", [])],
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        if min(checkpoint.position, checkpoint.sent, checkpoint.refused) < 0:
            return None
        return checkpoint


def matching(raw: dict[str, Any] | None, wanted: dict[str, Any]) -> Checkpoint | None:
    """The stored checkpoint if it applies to a run of `wanted` identity, else None."""
    checkpoint = Checkpoint.from_json(raw) if raw is not None else None
    return checkpoint if checkpoint is not None and checkpoint.identity == wanted else None


def resume(checkpoint: Checkpoint, report: RunReport) -> jobs.Deliveries:
    """Carry an unfinished run's progress into this run's report; the deliveries it made."""
    counts = report.counts
    counts.sent = checkpoint.sent
    counts.rejected += checkpoint.refused
    if checkpoint.refused:
        report.rejects[REFUSED] += checkpoint.refused
    report.jobs = list(checkpoint.jobs)
    report.resumed_from = {"run_id": checkpoint.run_id, "contacts_skipped": checkpoint.position}
    log.info("export '%s': resuming run %s after %d contacts", report.export, checkpoint.run_id, checkpoint.position)
    return jobs.Deliveries(checkpoint.ranges, checkpoint.refused_positions)
