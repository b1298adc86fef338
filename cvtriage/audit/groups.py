"""Flagging, and findings that share a cause the audit can name (the image border, small boxes, a
class, a folder), each summed up as one group with its own saved view."""

from __future__ import annotations

import re
from pathlib import Path

from cvtriage.audit.findings import KINDS, Finding, FindingGroup, kind_view_name
from cvtriage.audit.image_labels import ImageLabels
from cvtriage.config import AuditConfig

# A box this close to the frame (px) touches the border: a cut-off object's box ends at the edge,
# give or take the labeller's or the model's pixel.
BORDER_PX = 2
# COCO's "small" objects: under 32 x 32 px of area.
SMALL_AREA_PX = 32 * 32
# A shared cause is named (a summary line and a saved view) when it holds at least this many of
# the kind's findings that score like its errors (see choose_thresholds), at least this share of
# them, and is at least this many times as common among them as among the dataset's labels: a
# pattern a team decides on once (a labelling policy, a class, a labeller's folder), not a
# coincidence a reviewer would see one by one anyway.
GROUP_MIN_FINDINGS, GROUP_MIN_SHARE, GROUP_MIN_LIFT = 5, 0.25, 2.0


def touches_border(box, size: tuple[int, int]) -> bool:
    width, height = size
    x1, y1, x2, y2 = box
    return min(x1 * width, y1 * height, (1 - x2) * width, (1 - y2) * height) <= BORDER_PX


def box_causes(box, class_name: str, image_path: str, size: tuple[int, int] | None) -> dict[str, str]:
    """The nameable causes a box has (cause -> how the summary says it). Border and size need the
    image's size in pixels (`size` None: only class and folder)."""
    folder = Path(image_path).parent
    causes = {f"class {class_name}": f"are class '{class_name}'", f"folder {folder}": f"are in folder {folder}"}
    if size is not None:
        if touches_border(box, size):
            causes["border"] = "touch the image border"
        x1, y1, x2, y2 = box
        if (x2 - x1) * size[0] * (y2 - y1) * size[1] < SMALL_AREA_PX:
            causes["small"] = "are small (under 32x32 px, COCO's small)"
    return causes


def _finding_box_class(finding: Finding) -> tuple[list[float], str]:
    if finding.kind == "missing":
        return finding.pred_box, finding.pred_class
    return finding.label_box, finding.label_class


def flag_findings(
    findings: list[Finding], thresholds: dict[str, float], config: AuditConfig, sizes: dict[str, tuple[int, int]]
) -> tuple[list[Finding], int]:
    """The findings at or above their kind's threshold, and how many missing findings were left
    out because they touch the border (config.ignore_border)."""
    flagged, border_ignored = [], 0
    for finding in findings:
        if finding.score < thresholds[finding.kind]:
            continue
        size = sizes.get(finding.sample_id)
        if config.ignore_border and finding.kind == "missing" and size and touches_border(finding.pred_box, size):
            border_ignored += 1
            continue
        flagged.append(finding)
    return flagged, border_ignored


def group_findings(
    searched: list[Finding], floors: dict[str, float], images: list[ImageLabels], sizes: dict[str, tuple[int, int]]
) -> list[FindingGroup]:
    """Causes shared by many of a kind's `searched` findings (those scoring at least its floor,
    see choose_thresholds; GROUP_MIN_*), largest first."""
    label_causes: dict[str, int] = {}
    label_count = 0
    for image in images:
        for box, class_name in zip(image.label_boxes, image.label_classes):
            label_count += 1
            for cause in box_causes(box, str(class_name), image.image_path, sizes.get(image.sample_id)):
                label_causes[cause] = label_causes.get(cause, 0) + 1
    groups = []
    for kind in KINDS:
        of_kind = [f for f in searched if f.kind == kind]
        members: dict[str, list[Finding]] = {}
        descriptions: dict[str, str] = {}
        for finding in of_kind:
            box, class_name = _finding_box_class(finding)
            for cause, description in box_causes(box, class_name, finding.image_path, sizes.get(finding.sample_id)).items():
                members.setdefault(cause, []).append(finding)
                descriptions[cause] = description
        for cause, group in members.items():
            share, label_share = len(group) / len(of_kind), label_causes.get(cause, 0) / max(label_count, 1)
            if len(group) >= GROUP_MIN_FINDINGS and share >= GROUP_MIN_SHARE and share >= GROUP_MIN_LIFT * label_share:
                # A view's name: audit-missing-border, audit-class-class-bag, audit-spurious-folder-train.
                short = f"folder {Path(cause.removeprefix('folder ')).name}" if cause.startswith("folder ") else cause
                slug = re.sub(r"[^a-z0-9]+", "-", short.lower()).strip("-")
                groups.append(FindingGroup(
                    kind, cause, descriptions[cause], len(group), len(of_kind), floors[kind], label_share,
                    f"{kind_view_name(kind)}-{slug}",
                    [f.pred_id if kind == "missing" else f.label_id for f in group],
                ))
    return sorted(groups, key=lambda group: -group.count)



def image_sizes(samples) -> dict[str, tuple[int, int]]:
    """Each sample's image size in pixels (read from the files when FiftyOne has no metadata yet)."""
    if samples.exists("metadata.width", False).count():
        samples.compute_metadata(progress=False)
    ids, widths, heights = samples.values(["id", "metadata.width", "metadata.height"])
    return {sample_id: (w, h) for sample_id, w, h in zip(ids, widths, heights) if w and h}
