"""The audit's files: audit.csv and audit.json (the flagged findings, best first) and audit_scores.png."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cvtriage.audit.findings import KINDS, AuditReport, Finding
from cvtriage.boxes import xyxy_to_cxcywh
from cvtriage.config import AuditConfig
from cvtriage.files import replaced_on_success, write_text_atomic

CSV_COLUMNS = [
    "rank", "image_path", "label_index", "kind", "score", "label_class", "label_cxcywh",
    "pred_class", "pred_cxcywh", "pred_confidence", "sample_id", "label_id", "pred_id",
]


def _rounded_cxcywh(box: list[float] | None) -> list[float] | None:
    return None if box is None else [round(value, 6) for value in xyxy_to_cxcywh(box).tolist()]


def report_rows(findings: list[Finding]) -> list[dict]:
    """Rows of audit.csv/json: boxes as normalised centre-x, centre-y, width, height (YOLO's)."""
    rows = []
    for rank, finding in enumerate(findings, start=1):
        row = asdict(finding)
        row.pop("label_box"), row.pop("pred_box")
        row["score"] = round(finding.score, 4)
        rows.append({"rank": rank, **row, "label_cxcywh": _rounded_cxcywh(finding.label_box), "pred_cxcywh": _rounded_cxcywh(finding.pred_box)})
    return rows


def write_reports(report: AuditReport, config: AuditConfig, data: str) -> None:
    """audit.csv and audit.json in report.out_dir, each written whole then renamed into place."""
    out_dir = report.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = report_rows(report.flagged)
    with replaced_on_success(out_dir / "audit.csv") as csv_partial, csv_partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({
                **row,
                "label_cxcywh": " ".join(map(str, row["label_cxcywh"])) if row["label_cxcywh"] else "",
                "pred_cxcywh": " ".join(map(str, row["pred_cxcywh"])) if row["pred_cxcywh"] else "",
            })
    content = {
        "data": str(data),
        "dataset": report.dataset_name,
        "audited_samples": report.audited_samples,
        "settings": config.model_dump(),
        "counts": report.counts(),
        "thresholds": {kind: (None if np.isinf(value) else round(value, 4)) for kind, value in report.thresholds.items()},
        "groups": [{k: v for k, v in asdict(group).items() if k != "ids"} for group in report.groups],
        "border_ignored": report.border_ignored,
        "labels_seen": report.labels_seen,
        "stage_seconds": report.stage_seconds,
        "box_format": "normalised centre-x centre-y width height",
        "rows": rows,
    }
    write_text_atomic(out_dir / "audit.json", json.dumps(content, indent=2))
    write_score_plot(report)


def write_score_plot(report: AuditReport) -> Path:
    """audit_scores.png: how the scores of each kind spread, with each kind's threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(KINDS), figsize=(4 * len(KINDS), 3.2), sharey=True)
    for axis, kind in zip(axes, KINDS):
        scores = [finding.score for finding in report.findings if finding.kind == kind]
        axis.hist(scores, bins=40, range=(0, 1), color="tab:blue")
        threshold = report.thresholds[kind]
        if not np.isinf(threshold):
            axis.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:.3f}")
            axis.legend(loc="upper center")
        axis.set_title(f"{kind}: {report.counts()[kind]} of {len(scores)} flagged")
        axis.set_xlabel("score")
    axes[0].set_ylabel("findings")
    if report.findings:  # a log axis (shared by all kinds) needs some count above zero
        axes[0].set_yscale("log")
    figure.tight_layout()
    path = report.out_dir / "audit_scores.png"
    with replaced_on_success(path) as partial:
        figure.savefig(partial, dpi=100)
    plt.close(figure)
    return path
