"""`cvtriage synth video OUT.mp4 --site N`: N flights over one site (cvtriage.synth.site), each a
flyover with its flight log and truth (OUT-1.mp4, OUT-2.mp4, ...), and the site's truth beside
them (OUT.site.json, schema "cvtriage-synth-site/1"):

    {"schema": "cvtriage-synth-site/1",
     "flights": [{"video": "OUT-1.mp4", "srt": "OUT-1.SRT", "truth": "OUT-1.truth.json", "reverse": false}, ...],
     "objects": [{"object": 0, "class_name": "bag",
                  "flights": [{"present": true, "latitude": 46.2, "longitude": 6.14}, ...]}, ...],
     "changes": [{"from": 0, "to": 1, "object": 3, "change": "moved", "moved_m": 6.1}, ...]}

Flight numbers in `changes` count from 0, as in `flights`.
"""

from __future__ import annotations

import json
from pathlib import Path

from cvtriage.errors import CvtriageError
from cvtriage.files import write_text_atomic
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.synth.site import SiteSpec
from cvtriage.synth.video import (
    FlyoverSpec,
    VideoSummary,
    build_flyover,
    generate_video,
    srt_path_for,
    truth_path_for,
)

SITE_SCHEMA = "cvtriage-synth-site/1"


def site_path_for(out: Path) -> Path:
    return Path(out).with_name(Path(out).stem + ".site.json")


def flight_path_for(out: Path, flight: int) -> Path:
    """The video of a site's flight `flight` (from 0): OUT-1.mp4, OUT-2.mp4, ..."""
    return Path(out).with_name(f"{Path(out).stem}-{flight + 1}{Path(out).suffix}")


def generate_site(
    out: Path, spec: FlyoverSpec, flights: int, change_share: float = 0.2, force: bool = False,
    on_progress: ProgressCallback = no_progress,
) -> tuple[list[VideoSummary], Path]:  # fmt: skip
    """Write each flight (video, log, truth) and the site's truth; returns the flights' summaries
    and the site file."""
    if not 2 <= flights <= 20:
        raise CvtriageError(f"--site {flights}: a site is flown 2 to 20 times")
    if not 0 < change_share <= 0.9:
        raise CvtriageError(f"--changes {change_share:g}: a share of the objects, above 0 and at most 0.9")
    site_file = site_path_for(out)
    if site_file.exists() and not force:
        raise CvtriageError(f"{site_file}: already exists (pass --force to replace it)")
    # The site's plan (the same in every flight); and bad settings fail here, before any file is written.
    plan = build_flyover(spec, hide_objects=True, site=SiteSpec(flights, 0, change_share)).plan
    summaries = []
    for flight in range(flights):
        summaries.append(generate_video(
            flight_path_for(out, flight), spec, force, site=SiteSpec(flights, flight, change_share),
            on_progress=lambda done, total, detail="", f=flight: on_progress(f * total + done, flights * total, detail),
        ))  # fmt: skip
    truths = [json.loads(summary.truth.read_text()) for summary in summaries]
    objects: dict[int, dict] = {}
    for flight, truth in enumerate(truths):
        for record in truth["objects"]:
            entry = objects.setdefault(record["object"], {"object": record["object"], "class_name": record["class_name"],
                                                          "flights": [{"present": False} for _ in truths]})  # fmt: skip
            entry["flights"][flight] = {"present": True, **record["ground_position"]}
    document = {
        "schema": SITE_SCHEMA,
        "flights": [
            {"video": s.video.name, "srt": srt_path_for(s.video).name, "truth": truth_path_for(s.video).name,
             "reverse": t["telemetry"]["reverse"]}
            for s, t in zip(summaries, truths)
        ],  # fmt: skip
        "objects": [objects[key] for key in sorted(objects)],
        "changes": [{**{k: v for k, v in change.items() if k != "slot"}, "object": change["slot"]} for change in plan.changes],
    }
    write_text_atomic(site_file, json.dumps(document, indent=1) + "\n")
    return summaries, site_file

