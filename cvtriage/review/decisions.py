"""Reviewers' decisions on scan events, read back from the FiftyOne App's tags and from CSV.

The vocabulary (tags on an event's sample, on its own box, the one tagged `event`, or on its patch
in the review queue, `event_patch`):
- `confirmed`: the right object, the right class;
- `class:<name>`: an object, but a <name> (a class the model does not know yet starts this way);
- `not-object`: nothing worth a box (it becomes a hard negative).
The same decisions as CSV rows, `event_id,decision,class` (decision: confirmed, wrong-class,
not-object; a `video` column names the video when the dataset holds several).

`read_decisions` is the one way in: every problem (an unknown tag, an event decided two ways, a
class that looks like a typo of a known one, a CSV row naming no event) is reported, one line
each, and nothing is dropped silently.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

from cvtriage.decision_tags import (
    CLASS_PREFIX,
    CONFIRMED,
    EVENT_PATCH_FIELD,
    NOT_OBJECT,
    PROPOSAL_CLASS,
    SCAN_TAGS,
    VERDICTS,
    WRONG_CLASS,
    carried_decision,
    decision_of_tag,
    sightings,
)
from cvtriage.errors import CvtriageError

CSV_COLUMNS = ("event_id", "decision", "class")
# How alike two class names must be (difflib's ratio) to be taken for one name mistyped.
TYPO_SIMILARITY = 0.8
PROBLEMS_SHOWN = 20


@dataclass(frozen=True)
class Decision:
    """One reviewer's verdict on one event."""

    video: str  # the scanned source, as stored on the samples (resolved path)
    event_id: int
    verdict: str  # CONFIRMED, WRONG_CLASS or NOT_OBJECT
    class_name: str | None  # the object's true class (None for NOT_OBJECT)
    where: str  # where it was read: "App tag on sample ...", "decisions.csv:4"

    @property
    def key(self) -> tuple[str, int]:
        return self.video, self.event_id

    def same_as(self, other: "Decision") -> bool:
        return (self.verdict, self.class_name) == (other.verdict, other.class_name)


@dataclass(frozen=True)
class ScanEvent:
    """What a decision refers to: an event sample of the scan dataset."""

    video: str
    event_id: int
    class_name: str  # the model's class
    sample_id: str


class DecisionProblems(CvtriageError):
    """Every problem found in the decisions, one line each."""

    def __init__(self, where: str, problems: list[str]):
        if len(problems) == 1:  # one line, as every other error
            message = f"{where}: {problems[0]} (nothing harvested)"
        else:  # the summary line, then a line for each (up to PROBLEMS_SHOWN): all to mend at once
            shown = problems[:PROBLEMS_SHOWN]
            more = [f"... and {len(problems) - len(shown)} more"] if len(problems) > len(shown) else []
            lines = "\n".join(f"  {line}" for line in [*shown, *more])
            message = f"{where}: {len(problems)} problems in the review decisions, nothing harvested:\n{lines}"
        super().__init__(message)
        self.problems = problems


def _tag_hint(tag: str) -> str:
    """What an unknown tag was probably meant to be."""
    lowered = tag.lower().strip()
    if lowered.replace(" ", "").replace("=", ":").startswith("class") or ":" in lowered:
        name = lowered.split(":", 1)[-1].split("=", 1)[-1].removeprefix("class").strip(" :=_-")
        return f" (did you mean '{CLASS_PREFIX}{name or '<name>'}'?)"
    close = difflib.get_close_matches(lowered.replace("_", "-").replace(" ", "-"), [CONFIRMED, NOT_OBJECT], n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return ""


def events_of_dataset(dataset) -> dict[tuple[str, int], ScanEvent]:
    """The scan events a dataset holds, by (video, event id)."""
    videos, ids, classes, sample_ids = dataset.values(["source_video", "event_id", "class_name", "id"])
    return {
        (video, int(event_id)): ScanEvent(video, int(event_id), class_name, sample_id)
        for video, event_id, class_name, sample_id in zip(videos, ids, classes, sample_ids)
        if video is not None and event_id is not None
    }


def decisions_from_tags(dataset, ignore_tags: set[str]) -> tuple[list[Decision], list[str]]:
    """Decisions tagged in the App: on an event's sample, its own box or its patch. Returns (decisions, problems)."""
    decisions: list[Decision] = []
    problems: list[str] = []
    fields = ["source_video", "event_id", "tags", "detections.detections.tags", "detections.detections.event_id", "filepath"]
    has_patches = EVENT_PATCH_FIELD in dataset.get_field_schema()
    patch_tags = dataset.values(f"{EVENT_PATCH_FIELD}.detections.tags") if has_patches else [None] * len(dataset)
    for (video, event_id, sample_tags, box_tags, box_events, filepath), patches in zip(zip(*dataset.values(fields)), patch_tags):
        if video is None or event_id is None:
            continue
        name = f"event {event_id} of {Path(video).name} ({Path(filepath).name})"
        tagged = [(tag, f"App tag '{tag}' on the sample of {name}") for tag in sample_tags or []]
        tagged += [(tag, f"App tag '{tag}' on the patch of {name}") for tags in patches or [] for tag in tags or []]
        for tags, owner in zip(box_tags or [], box_events or []):
            for tag in tags or []:
                if owner == event_id:
                    tagged.append((tag, f"App tag '{tag}' on the box of {name}"))
                elif decision_of_tag(tag) is not None:
                    problems.append(
                        f"{name}: '{tag}' is on another object's box in this keyframe: tag the event's own box "
                        "(the one tagged 'event') or the sample"
                    )
                elif tag not in SCAN_TAGS | ignore_tags:
                    problems.append(f"{name}: unknown tag '{tag}' on a box{_tag_hint(tag)}")
        for tag, where in tagged:
            parsed = decision_of_tag(tag)
            if parsed is not None:
                decisions.append(Decision(video, int(event_id), parsed[0], parsed[1], where))
            elif tag not in SCAN_TAGS | ignore_tags:
                problems.append(f"{name}: unknown tag '{tag}'{_tag_hint(tag)}; decision tags are {CONFIRMED}, "
                                f"{NOT_OBJECT}, {CLASS_PREFIX}<name> (pass --ignore-tag {tag} to leave it be)")  # fmt: skip
    return decisions, problems


def decisions_from_csv(path: Path, events: dict[tuple[str, int], ScanEvent]) -> tuple[list[Decision], list[str]]:
    """Decisions from a CSV of event_id,decision,class[,video] rows. Returns (decisions, problems)."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            table = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise CvtriageError(f"{path}: cannot read it as CSV ({error})") from None
    header = [name.strip() for name in table[0]] if table else []
    rows = [(line, dict(zip(header, values))) for line, values in enumerate(table[1:], 2) if any(v.strip() for v in values)]
    missing = [column for column in CSV_COLUMNS if column not in header]
    if missing:
        raise CvtriageError(f"{path}: no column {', '.join(missing)} (expected a header {','.join(CSV_COLUMNS)}[,video])")
    videos = sorted({video for video, _ in events})
    decisions, problems = [], []
    for line, row in rows:
        row = {key: (value or "").strip() for key, value in row.items()}
        where = f"{path}:{line}"
        video, error = _video_of_row(row.get("video", ""), videos)
        if error:
            problems.append(f"{where}: {error}")
            continue
        try:
            event_id = int(row["event_id"])
        except ValueError:
            problems.append(f"{where}: event_id '{row['event_id']}' is not a number")
            continue
        if (video, event_id) not in events:
            problems.append(f"{where}: no event {event_id} of {Path(video).name} in the dataset")
            continue
        verdict, class_name = row["decision"].lower(), row["class"] or None
        if verdict not in VERDICTS:
            problems.append(f"{where}: decision '{row['decision']}' is not one of {', '.join(VERDICTS)}{_tag_hint(verdict)}")
        elif verdict == WRONG_CLASS and class_name is None:
            problems.append(f"{where}: wrong-class needs the right class in the class column")
        elif verdict == NOT_OBJECT and class_name is not None:
            problems.append(f"{where}: not-object takes no class (got '{class_name}')")
        elif verdict == CONFIRMED and class_name not in (None, events[video, event_id].class_name):
            own = events[video, event_id].class_name
            if _near_miss(class_name, [own]):  # its own class misspelt: confirmed needs no class
                problems.append(f"{where}: confirmed with class '{class_name}', a typo of the event's own "
                                f"'{own}': leave the class column empty to confirm it")  # fmt: skip
            else:
                problems.append(f"{where}: confirmed with class '{class_name}', but the event is a '{own}': use wrong-class")
        else:
            decisions.append(Decision(video, event_id, verdict, class_name if verdict == WRONG_CLASS else None, where))
    return decisions, problems


def _video_of_row(named: str, videos: list[str]) -> tuple[str | None, str | None]:
    """The dataset's video a CSV row means: by path, file name or stem; needed with several videos."""
    if not named:
        if len(videos) == 1:
            return videos[0], None
        return None, f"the dataset holds {len(videos)} videos: add a video column"
    matches = [video for video in videos if named in (video, Path(video).name, Path(video).stem)]
    if len(matches) == 1:
        return matches[0], None
    return None, f"video '{named}' is {'ambiguous' if matches else 'not in the dataset'} ({', '.join(Path(v).name for v in videos)})"


def check_classes(
    decisions: list[Decision], known: list[str], new_classes: set[str], say_new: str = "pass --new-class '{name}'"
) -> list[str]:
    """Problems with the classes decisions name: a near miss of a known class is a typo unless the
    reviewer said it is new (`new_classes`); two new names alike are one class spelt two ways.
    `say_new`: how the reviewer says a name is new, where they decide (the CLI's flag by default)."""
    problems = []
    accepted = set(known) | set(new_classes)
    new_names: dict[str, Decision] = {}
    for decision in decisions:
        name = decision.class_name
        if name is None or name in accepted:
            continue
        near = _near_miss(name, sorted(accepted) + [n for n in new_names if n != name])
        if near is not None:
            problems.append(f"{decision.where}: class '{name}' looks like a typo of '{near}' "
                            f"(if it is a new class, {say_new.format(name=name)})")  # fmt: skip
        else:
            new_names.setdefault(name, decision)
    return problems


def _near_miss(name: str, candidates: list[str]) -> str | None:
    folded = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
    for candidate in candidates:
        if folded == " ".join(candidate.lower().replace("_", " ").replace("-", " ").split()):
            return candidate
    close = difflib.get_close_matches(name.lower(), [c.lower() for c in candidates], n=1, cutoff=TYPO_SIMILARITY)
    return next((c for c in candidates if close and c.lower() == close[0]), None)


def read_decisions(
    dataset,
    csv_path: Path | None = None,
    known_classes: list[str] = (),
    new_classes: set[str] = frozenset(),
    ignore_tags: set[str] = frozenset(),
) -> list[Decision]:
    """Every event's decision, from the App's tags and (optionally) a CSV, validated together.

    One decision per event: the same verdict given twice (a tag on the sample and on its box, or in
    the App and the CSV) counts once; two different verdicts are a problem. A `class:` decision
    naming the event's own class is `confirmed`. Raises DecisionProblems listing every problem.
    A decision on one sighting of an object holds for its other sightings (carried_to_sightings).
    """
    events = events_of_dataset(dataset)
    decisions, problems = decisions_from_tags(dataset, set(ignore_tags))
    if csv_path is not None:
        from_csv, csv_problems = decisions_from_csv(csv_path, events)
        decisions += from_csv
        problems += csv_problems
    decisions = [_normalised(decision, events) for decision in decisions]
    problems += proposals_confirmed(decisions)
    problems += check_classes(decisions, list(known_classes), set(new_classes))
    chosen: dict[tuple[str, int], Decision] = {}
    for decision in decisions:
        earlier = chosen.setdefault(decision.key, decision)
        if not earlier.same_as(decision):
            problems.append(
                f"event {decision.event_id} of {Path(decision.video).name} is decided two ways: "
                f"{_describe(earlier)} ({earlier.where}) and {_describe(decision)} ({decision.where})"
            )
    if problems:
        raise DecisionProblems(dataset.name, problems)
    return sorted([*chosen.values(), *carried_to_sightings(dataset, chosen)], key=lambda d: d.key)


def proposals_confirmed(decisions: list[Decision]) -> list[str]:
    """A problem for each decision confirming a proposal (normalised: class_name is the event's)."""
    return [
        f"{decision.where}: confirms a proposal (class '{PROPOSAL_CLASS}'), which teaches no class: say what "
        f"it is with {CLASS_PREFIX}<name>, or {NOT_OBJECT}"
        for decision in decisions if decision.verdict == CONFIRMED and decision.class_name == PROPOSAL_CLASS
    ]  # fmt: skip


def carried_to_sightings(dataset, chosen: dict[tuple[str, int], Decision]) -> list[Decision]:
    """A decision on one sighting of an object (events of one video with one `object_id`: the same
    thing on the ground, seen on several passes) holds for its sightings nobody decided on. Sightings
    decided two ways carry nothing over: each keeps its own, the others stay undecided."""
    carried = []
    for seen in sightings(dataset, ["source_video", "event_id"]):
        keys = [(video, int(event_id)) for video, event_id in seen if event_id is not None]
        source = carried_decision([chosen.get(key) for key in keys], Decision.same_as)
        if source is None:
            continue
        for video, event_id in keys:
            if (video, event_id) not in chosen:
                where = f"carried from event {source.event_id} (the same object on the ground; {source.where})"
                carried.append(Decision(video, event_id, source.verdict, source.class_name, where))
    return carried


def _normalised(decision: Decision, events: dict[tuple[str, int], ScanEvent]) -> Decision:
    event = events.get(decision.key)
    if event is not None and (decision.verdict == CONFIRMED or decision.class_name == event.class_name):
        return Decision(decision.video, decision.event_id, CONFIRMED, event.class_name, decision.where)
    return decision


def _describe(decision: Decision) -> str:
    return f"{CLASS_PREFIX}{decision.class_name}" if decision.verdict == WRONG_CLASS else decision.verdict
