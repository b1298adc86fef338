"""One turn of the review loop in one call (`cvtriage teach DATASET`): harvest the decisions taken
in a scan dataset, merged into the last turn's data; fine-tune the model that scanned on it; scan
the dataset's videos again with the new weights; compare each video's two scans.

The rescan goes into a new dataset, the next turn's (`<root>-turn<N+1>`), not into the reviewed
one: a rescan of a video replaces its samples, and the reviewed dataset keeps every decision
taken in it; the reviewer's next queue then holds only what the new model proposes, nobody's
decision yet. The next dataset records where its turn's data is, so `cvtriage teach` on it
merges the next harvest into that data, whichever --out the turns use.

Everything a turn writes is in its folder, <out>/<root dataset>/turn-<N>/: turn.json (the
settings and the steps finished), data/ (the harvest), train/ (Ultralytics' run), scan/ (the
rescans) and compare/<video>/. An interrupted turn resumes where it stopped: the same command
skips the steps turn.json says are finished, and each step resumes on its own: the harvest is
written whole or not at all, training continues from its last.pt (Ultralytics' resume), a
rescan from its detection log, and videos already rescanned are not scanned again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cvtriage.config import HarvestConfig, ScanConfig, TrainConfig
from cvtriage.config.settings import DATASET_NAME
from cvtriage.decision_tags import undecided_filter
from cvtriage.errors import CvtriageError
from cvtriage.files import write_text_atomic
from cvtriage.progress import ProgressCallback, no_progress
from cvtriage.review.compare import Comparison, compare_scans
from cvtriage.review.harvest import MANIFEST as HARVEST_MANIFEST
from cvtriage.review.harvest import check_source_unchanged, harvest, scan_runs
from cvtriage.scan.store import review_queue
from cvtriage.scan.results import ScanRun
from cvtriage.train.training import train

TURN_JSON = "turn.json"
STEPS = ("harvest", "train", "scan", "compare")
# The dataset's info key naming its place in the loop: the first dataset's name, its turn, and
# the data its turn's harvest merges into (the previous turn's).
LOOP_INFO = "cvtriage_loop"
# Scan settings a rescan does not take from the reviewed scan: where results go, and which model
# (every class of the new one; proposals were for a model that knew none).
RESCAN_OWN = {"weights", "out", "dataset", "replace_decisions", "classes", "propose"}


@dataclass
class TurnSettings:
    """What a turn does besides its defaults: each step's settings, and the turn's own."""

    harvest: HarvestConfig
    train: TrainConfig  # its weights, names, out and name are the turn's: the scan's model, the harvest's classes
    merge: Path | None = None  # a YOLO dataset the first turn's harvest is merged into (later: the last turn's data)
    decisions_csv: Path | None = None
    conf: float | None = None  # the rescan's confidence (default: the reviewed scan's)
    out: Path = Path("runs/teach")
    next_dataset: str | None = None  # default <root>-turn<N+1>

    def __post_init__(self) -> None:
        # Checked before the turn starts: the rescan comes after minutes of training.
        if self.conf is not None and not 0 < self.conf < 1:
            raise CvtriageError(f"--conf {self.conf:g}: expected a confidence between 0 and 1 (both excluded)")
        if self.next_dataset is not None and not DATASET_NAME.match(self.next_dataset):
            raise CvtriageError(f"--next-dataset {self.next_dataset}: not a dataset name we accept: letters, digits, "
                                "'.', '_' and '-', starting with a letter or digit")  # fmt: skip

    def recorded(self) -> dict[str, Any]:
        """What turn.json keeps of them: a resumed turn must run as it started."""
        return {
            "harvest": self.harvest.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json", exclude={"weights", "names", "out", "name"}),
            "merge": None if self.merge is None else str(Path(self.merge).resolve()),
            "decisions_csv": None if self.decisions_csv is None else str(Path(self.decisions_csv).resolve()),
            "conf": self.conf,
        }


@dataclass
class TurnResult:
    folder: Path
    dataset: str
    turn: int
    next_dataset: str
    data_yaml: Path
    best_weights: Path
    metrics: dict[str, Any]  # the training's metrics.json
    comparisons: list[Comparison]
    queue: int  # undecided events in the next dataset's review queue
    resumed: list[str] = field(default_factory=list)  # steps found finished by an earlier run


class _Manifest:
    """turn.json: the turn's settings and what each step has finished, rewritten after each."""

    def __init__(self, path: Path, document: dict[str, Any]):
        self.path, self.document = path, document

    @property
    def steps(self) -> dict[str, Any]:
        return self.document["steps"]

    def save(self) -> None:
        self.document["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_text_atomic(self.path, json.dumps(self.document, indent=1) + "\n")


def teach(dataset_name: str, settings: TurnSettings, progress: Callable[[str], ProgressCallback] = lambda step: no_progress) -> TurnResult:
    """Run (or resume) the turn of the scan dataset `dataset_name`. `progress(step)` gives the
    callback of each step in STEPS: harvest (frames), train (epochs), scan (frames of each
    video), compare (videos). Every check that can fail before the work starts runs first."""
    from cvtriage.review.app import load_review_dataset

    dataset = load_review_dataset(dataset_name)
    runs = scan_runs(dataset)
    for run in runs.values():
        check_source_unchanged(run)  # a moved video: one line, before anything is written
    weights = _scan_weights(runs, dataset.name)
    loop = dict(dataset.info.get(LOOP_INFO) or {})
    root, turn = loop.get("root", dataset.name), int(loop.get("turn", 1))
    merge = settings.merge if settings.merge is not None else (Path(loop["merge"]) if loop.get("merge") else None)
    settings = dataclasses.replace(settings, merge=merge)
    folder = (Path(settings.out) / root / f"turn-{turn}").resolve()
    manifest = _open_manifest(folder, dataset.name, turn, settings)
    next_name = manifest.document.setdefault("next_dataset", settings.next_dataset or f"{root}-turn{turn + 1}")
    resumed = [step for step in STEPS if manifest.steps.get(step, {}).get("done")]

    data_yaml = _harvest_step(manifest, dataset.name, settings, progress("harvest"))
    trained = _train_step(manifest, data_yaml, weights, settings, progress("train"))
    rescans = _scan_step(manifest, runs, Path(trained["best"]), settings, next_name, (root, turn), progress("scan"))
    comparisons = _compare_step(manifest, runs, rescans, progress("compare"))

    import fiftyone as fo

    queue = len(review_queue(fo.load_dataset(next_name))) if fo.dataset_exists(next_name) else 0
    return TurnResult(folder, dataset.name, turn, next_name, data_yaml, Path(trained["best"]), trained["metrics"],
                      comparisons, queue, resumed)  # fmt: skip


def decided_since(result: TurnResult) -> int:
    """Events decided in the reviewed dataset beyond those its turn harvested (decided after it)."""
    import fiftyone as fo

    manifest = json.loads((result.folder / TURN_JSON).read_text())
    decided = len(fo.load_dataset(result.dataset).match(~undecided_filter()))
    return max(0, decided - sum(manifest["steps"]["harvest"]["decisions"].values()))


# --- checks -------------------------------------------------------------------------------------


def _scan_weights(runs: dict[str, ScanRun], dataset: str) -> str:
    """The one model that scanned every video: what the turn fine-tunes."""
    weights = sorted({str(run.settings.get("weights")) for run in runs.values()})
    if len(weights) != 1:
        raise CvtriageError(f"{dataset}: its videos were scanned by different models ({', '.join(weights)}): a turn "
                            "fine-tunes one; scan them with one model into a dataset of their own")  # fmt: skip
    return weights[0]


def _open_manifest(folder: Path, dataset: str, turn: int, settings: TurnSettings) -> _Manifest:
    """The turn folder's turn.json, or a new one; a turn started with other settings is refused."""
    path = folder / TURN_JSON
    if not path.is_file():  # written once the first step is done: a turn refused at its start leaves nothing
        return _Manifest(path, {"dataset": dataset, "turn": turn, "settings": settings.recorded(), "steps": {}})
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        recorded, steps = document["settings"], document["steps"]
    except (OSError, ValueError, KeyError) as error:
        raise CvtriageError(f"{path}: cannot read it ({error}): delete {folder} to start the turn again") from None
    if document.get("dataset") != dataset:
        raise CvtriageError(f"{folder}: holds turn {turn} of {document.get('dataset')}, not of {dataset}: pass another --out")
    if recorded != settings.recorded() and any(step.get("done") for step in steps.values()):
        differ = sorted(key for key in recorded if recorded[key] != settings.recorded().get(key))
        raise CvtriageError(f"{path}: this turn started with other settings ({', '.join(differ)} differ): run it with "
                            f"the same ones to resume, or delete {folder} to start it again")  # fmt: skip
    document["settings"] = settings.recorded()
    return _Manifest(path, document)


# --- the steps ----------------------------------------------------------------------------------


def _harvest_step(manifest: _Manifest, dataset: str, settings: TurnSettings, on_progress: ProgressCallback) -> Path:
    data = manifest.path.parent / "data"
    if not manifest.steps.get("harvest", {}).get("done"):
        if not data.exists():  # else written whole (a harvest is renamed into place) by a turn stopped just after
            result = harvest(dataset, data, settings.harvest, settings.decisions_csv, settings.merge, on_progress)
            if not result.images("val") + result.merged_images["val"]:
                shutil.rmtree(data)  # nothing is lost: the decisions stay in the dataset
                raise CvtriageError(
                    f"{dataset}: the harvest has no val images (a short stretch of video is all train) and training "
                    "needs some: pass --merge a YOLO dataset with a val split (the first turn's base data)"
                )
        harvested = json.loads((data / HARVEST_MANIFEST).read_text(encoding="utf-8"))
        manifest.steps["harvest"] = {"done": True, "data": str(data), "names": harvested["names"],
                                     "decisions": dict(Counter(d["decision"] for d in harvested["decisions"]))}  # fmt: skip
        manifest.save()
    else:
        on_progress(1, 1, "done earlier")
    return data / "data.yaml"


def _train_step(manifest: _Manifest, data_yaml: Path, weights: str, settings: TurnSettings, on_progress: ProgressCallback) -> dict:
    done = manifest.steps.get("train", {})
    if done.get("done"):
        on_progress(1, 1, "done earlier")
        return done
    names = manifest.steps["harvest"]["names"]
    config = settings.train.model_copy(update={"weights": weights, "names": names})
    result = train(data_yaml, config, run_dir=manifest.path.parent / "train", on_progress=on_progress)
    manifest.steps["train"] = {"done": True, "best": str(result.best_weights), "weights": weights,
                               "metrics": json.loads(result.metrics_json.read_text())}  # fmt: skip
    manifest.save()
    return manifest.steps["train"]


def rescan_settings(run: ScanRun, weights: Path, out: Path, dataset: str, conf: float | None) -> ScanConfig:
    """The reviewed scan's detection settings, with the new weights and every class they know."""
    recorded = {key: value for key, value in run.settings.items() if key in ScanConfig.model_fields and key not in RESCAN_OWN}
    settings = ScanConfig.model_validate({**recorded, "weights": str(weights), "out": str(out), "dataset": dataset})
    return settings if conf is None else settings.model_copy(update={"conf": conf})


def _scan_step(
    manifest: _Manifest, runs: dict[str, ScanRun], weights: Path, settings: TurnSettings, next_name: str,
    place: tuple[str, int], on_progress: ProgressCallback,
) -> dict[str, Path]:  # fmt: skip
    from cvtriage.scan.pipeline import run_scan

    done = manifest.steps.setdefault("scan", {"videos": {}})
    if done.get("done"):
        on_progress(1, 1, "done earlier")
        return {video: Path(folder) for video, folder in done["videos"].items()}
    _claim_next_dataset(next_name, place, manifest.path.parent)
    for number, (video, run) in enumerate(sorted(runs.items()), start=1):
        if video in done["videos"]:
            continue
        scan = rescan_settings(run, weights, manifest.path.parent / "scan", next_name, settings.conf)
        label = f"{Path(video).name} ({number} of {len(runs)})"
        result = run_scan(Path(video), scan, on_progress=lambda d, t, detail="": on_progress(d, t, f"{label}  {detail}"))
        done["videos"][video] = str(result.out_dir)
        manifest.save()
    done["done"] = True
    manifest.save()
    return {video: Path(folder) for video, folder in done["videos"].items()}


def _claim_next_dataset(name: str, place: tuple[str, int], folder: Path) -> None:
    """Create the next turn's dataset, recording its place in the loop; one that exists must be this turn's."""
    import fiftyone as fo

    root, turn = place
    loop = {"root": root, "turn": turn + 1, "merge": str(folder / "data")}
    if fo.dataset_exists(name):
        dataset = fo.load_dataset(name)
        if dataset.info.get(LOOP_INFO) != loop and len(dataset):
            raise CvtriageError(f"FiftyOne dataset '{name}' exists and is not the next turn of this one: "
                                "pass --next-dataset NAME")  # fmt: skip
    else:
        dataset = fo.Dataset(name, persistent=True)
    dataset.info[LOOP_INFO] = loop
    dataset.save()


def _compare_step(
    manifest: _Manifest, runs: dict[str, ScanRun], rescans: dict[str, Path], on_progress: ProgressCallback
) -> list[Comparison]:
    comparisons = []
    for number, video in enumerate(sorted(runs), start=1):
        out = manifest.path.parent / "compare" / Path(video).stem
        comparisons.append(compare_scans(runs[video].folder, rescans[video], out=out))
        on_progress(number, len(runs), Path(video).name)
    manifest.steps["compare"] = {"done": True, "folders": [str(c.outputs["out_dir"]) for c in comparisons]}
    manifest.save()
    return comparisons
