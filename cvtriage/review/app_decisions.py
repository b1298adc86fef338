"""Decisions made in the App with a key: what the review plugin's operators do
(cvtriage/review/plugin), as plain functions on a dataset.

A decision is a tag on the event's patch (`event_patch`, the label the review queue shows), read
back by cvtriage.review.decisions like any other tag. These functions check a decision before
writing it (a class name that looks like a typo of a known one, an event already decided, a
proposal confirmed) with the reader's own checks, so what the plugin writes, harvest reads.
Each decision is logged in the dataset's info, newest last, so that `undo_last_decision` takes
back exactly what the plugin did. After each, the queues' patches are made again: FiftyOne keeps a
saved patches view's patches as they were when it was saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cvtriage.decision_tags import (
    CLASS_PREFIX,
    CONFIRMED,
    EVENT_PATCH_FIELD,
    NOT_OBJECT,
    PROPOSAL_CLASS,
    WRONG_CLASS,
    decision_of_tag,
    undecided_filter,
)
from cvtriage.database import dataset_write_lock
from cvtriage.errors import CvtriageError
from cvtriage.review.decisions import Decision, check_classes, decisions_from_tags, proposals_confirmed
from cvtriage.scan.looks import LOOK_FIELD
from cvtriage.scan.store import save_review_queues

# dataset.info key: the plugin's decisions, newest last ({"tag": ..., "sample_ids": [...]}).
DECISION_LOG = "cvtriage_app_decisions"
DECISIONS_KEPT = 1000  # undo reaches back this far
SAY_NEW_IN_APP = "tick 'new class'"


@dataclass(frozen=True)
class AppDecision:
    """A decision applied to one or more events (samples of the scan dataset)."""

    tag: str
    sample_ids: list[str]

    def describe(self) -> str:
        events = f"{len(self.sample_ids)} event{'' if len(self.sample_ids) == 1 else 's'}"
        return f"{self.tag} on {events}"


def event_sample_ids(view, selected: list[str]) -> list[str]:
    """The event samples behind the App's selection in `view` (patch ids in a patches view, sample
    ids otherwise); with nothing selected, the view's first: the head of the queue."""
    if not selected:
        head = view.first() if len(view) else None
        if head is None:
            raise CvtriageError("the queue is empty: nothing left to decide in this view")
        selected = [head.id]
    chosen = view.select(selected)
    if len(chosen) != len(set(selected)):
        raise CvtriageError(f"{len(set(selected)) - len(chosen)} selected samples are not in this view: reload the view")
    if view._is_patches:
        return [str(sample_id) for sample_id in chosen.values("sample_id")]
    return list(chosen.values("id"))


def known_classes(dataset) -> list[str]:
    """The classes a decision may name without a typo check: the model's (as scanned) and those
    already given in `class:` decisions."""
    model = {name for name in dataset.distinct("class_name") if name and name != PROPOSAL_CLASS}
    decided = {decision.class_name for decision in decisions_from_tags(dataset, set())[0] if decision.class_name}
    return sorted(model | decided)


def class_to_offer(dataset) -> str | None:
    """The class a class-X form offers first: the last one given in the App (reviewers name a run
    of one kind of miss in a row)."""
    for entry in reversed(dataset.info.get(DECISION_LOG, [])):
        parsed = decision_of_tag(entry["tag"])
        if parsed is not None and parsed[1] is not None:
            return parsed[1]
    return None


def decision_tag(dataset, verdict: str, class_name: str | None = None, new_class: bool = False) -> str:
    """The tag for a verdict (CONFIRMED, NOT_OBJECT or WRONG_CLASS with `class_name`), checked as
    the reader checks a class: a near miss of a known class is refused unless `new_class`."""
    if verdict in (CONFIRMED, NOT_OBJECT):
        return verdict
    if verdict != WRONG_CLASS:
        raise CvtriageError(f"unknown decision '{verdict}': expected {CONFIRMED}, {NOT_OBJECT} or {WRONG_CLASS}")
    name = (class_name or "").strip()
    if not name:
        raise CvtriageError("class: give the object's class (choose one or type a new name)")
    if name.lower() == PROPOSAL_CLASS:
        raise CvtriageError(f"class '{name}' names no class: say what the object is")
    decision = Decision("", 0, WRONG_CLASS, name, f"dataset {dataset.name}")
    problems = check_classes([decision], known_classes(dataset), {name} if new_class else set(), say_new=SAY_NEW_IN_APP)
    if problems:
        raise CvtriageError(problems[0])
    return f"{CLASS_PREFIX}{name}"


def apply_decision(dataset, sample_ids: list[str], tag: str) -> AppDecision:
    """Tag the patches of these events with `tag`, after checking every one: each must be an
    undecided event with a patch, and `confirmed` never goes on a proposal. All or nothing."""
    verdict = decision_of_tag(tag)
    if verdict is None:
        raise CvtriageError(f"'{tag}' is not a decision tag ({CONFIRMED}, {NOT_OBJECT}, {CLASS_PREFIX}<name>)")
    ids = list(dict.fromkeys(sample_ids))
    if not ids:
        raise CvtriageError("no event selected")
    events = dataset.select(ids)
    if len(events) != len(ids):
        raise CvtriageError(f"{len(ids) - len(events)} of the selected events are no longer in dataset '{dataset.name}': reload the view")
    without_patch = events.exists(EVENT_PATCH_FIELD, False)
    if len(without_patch):
        raise CvtriageError(f"{_names(without_patch)} has no patch (scanned by an older cvtriage): store it again with cvtriage store")
    if verdict[0] == CONFIRMED:
        confirms = [Decision(video, event_id, CONFIRMED, class_name, f"event {event_id} of {Path(video).name}")
                    for video, event_id, class_name in zip(*events.values(["source_video", "event_id", "class_name"]))]  # fmt: skip
        problems = proposals_confirmed(confirms)
        if problems:
            raise CvtriageError(problems[0])
    # Under the dataset's write lease, as a scan's store (`cvtriage watch` may be storing events now).
    # Logged after the tags are on: a failure in between leaves a decision that cannot be undone
    # with a key, never a logged one that was not made.
    with dataset_write_lock(dataset.name):
        decided = events.match(~undecided_filter())  # under the lease: another reviewer's key counts
        if len(decided):
            raise CvtriageError(f"{_names(decided)} is already decided: undo that decision first")
        events.tag_labels(tag, label_fields=EVENT_PATCH_FIELD)
        dataset.reload()
        log = [*dataset.info.get(DECISION_LOG, []), {"tag": tag, "sample_ids": ids}]
        dataset.info[DECISION_LOG] = log[-DECISIONS_KEPT:]
        dataset.save()
        save_review_queues(dataset)
    return AppDecision(tag, ids)


def undo_last_decision(dataset) -> AppDecision:
    """Take back the last decision made through the plugin: its tag off the patches it went on."""
    with dataset_write_lock(dataset.name):
        dataset.reload()
        log = list(dataset.info.get(DECISION_LOG, []))
        if not log:
            raise CvtriageError(f"nothing to undo: no decision made in the App on dataset '{dataset.name}' is left")
        last = log.pop()
        dataset.select(last["sample_ids"]).untag_labels(last["tag"], label_fields=EVENT_PATCH_FIELD)
        dataset.info[DECISION_LOG] = log
        dataset.save()
        save_review_queues(dataset)
    return AppDecision(last["tag"], list(last["sample_ids"]))


def refresh_review_queues(dataset) -> None:
    """Make the queues' patches again (tags put on in the App's tag menu leave them as they were)."""
    with dataset_write_lock(dataset.name):
        save_review_queues(dataset)


def events_like(dataset, sample_id: str) -> list[str]:
    """Every undecided event of the same look as this one (itself included, when undecided)."""
    from fiftyone import ViewField as F

    sample = dataset[sample_id]
    look = sample[LOOK_FIELD] if dataset.has_field(LOOK_FIELD) else None
    if look is None:
        raise CvtriageError(f"{_names(dataset.select([sample_id]))} has no look (no alike events computed): decide it alone")
    return list(dataset.match(F(LOOK_FIELD) == look).match(undecided_filter()).values("id"))


def _names(events) -> str:
    """'event 3 of a.mp4' or 'events 3, 5 of a.mp4' (a few, then a count)."""
    pairs = sorted(zip(events.values("event_id"), (Path(video).name for video in events.values("source_video"))))
    shown = ", ".join(f"{event_id} of {video}" for event_id, video in pairs[:5])
    more = f" and {len(pairs) - 5} more" if len(pairs) > 5 else ""
    return f"event{'s' if len(pairs) > 1 else ''} {shown}{more}"
