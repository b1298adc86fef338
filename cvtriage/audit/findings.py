"""What an audit finds: the kinds of label error, a finding (one suspect label or unexplained
prediction, with its evidence), groups of findings that share a cause, and the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cvtriage.labels.yolo import DataProblem

KINDS = ("class", "missing", "spurious", "location")
LIKELY_MISLABELED = "likely-mislabeled"


def audit_tag(kind: str) -> str:
    return f"audit:{kind}"


def kind_view_name(kind: str) -> str:
    return f"audit-{kind}"


@dataclass
class Finding:
    """A label (or, for `missing`, a prediction) that is likely wrong, with the evidence."""

    kind: str
    score: float
    sample_id: str
    image_path: str
    label_id: str | None = None
    label_index: int | None = None
    label_class: str | None = None
    label_box: list[float] | None = None  # relative x1 y1 x2 y2
    pred_id: str | None = None
    pred_class: str | None = None
    pred_box: list[float] | None = None
    pred_confidence: float | None = None


@dataclass
class FindingGroup:
    """Findings of one kind that share a cause the audit can name, seen as one pattern."""

    kind: str
    cause: str  # "border", "small", "class <name>", "folder <path>"
    description: str  # what the findings have in common, as the summary says it
    count: int
    of_kind: int  # findings of that kind searched for causes (those scoring at least `floor`)
    floor: float
    label_share: float  # share of the dataset's labels with the same trait
    view: str  # its saved view
    ids: list[str] = field(default_factory=list, repr=False)  # label ids (prediction ids for missing)


@dataclass
class AuditReport:
    dataset_name: str
    findings: list[Finding]  # every scored label and unexplained prediction, best first
    flagged: list[Finding]  # those at or above min_score (and within --top)
    audited_samples: int
    problems: list[DataProblem] = field(default_factory=list)
    out_dir: Path | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    labels_seen: float | None = None  # share of labels the model sees (visibility >= SEEN_VISIBILITY)
    thresholds: dict[str, float] = field(default_factory=dict)  # each kind's flagging threshold
    groups: list[FindingGroup] = field(default_factory=list)
    border_ignored: int = 0  # missing findings touching the border left out (ignore_border), from the group floor up

    def counts(self) -> dict[str, int]:
        return {kind: sum(finding.kind == kind for finding in self.flagged) for kind in KINDS}

