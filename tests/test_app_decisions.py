"""The review queue's patches and the decisions the review plugin makes on them (the plain
functions its operators call): written where the reader reads them, checked as the reader checks
them, undone exactly, and every bad input refused in one line with nothing changed."""

from __future__ import annotations

import re

import pytest
from test_harvest import scan_dataset, scanned  # noqa: F401 (fixtures: the square scan, a copy per test)

from cvtriage.decision_tags import EVENT_PATCH_FIELD
from cvtriage.errors import CvtriageError
from cvtriage.paths import REVIEW_PLUGIN_DIR
from cvtriage.review.app_decisions import (
    apply_decision,
    class_to_offer,
    decision_tag,
    event_sample_ids,
    events_like,
    undo_last_decision,
)
from cvtriage.review.decisions import read_decisions
from cvtriage.scan.priority import REVIEW_QUEUE_VIEW
from cvtriage.scan.store import EVENT_BOX_TAG, LOOKS_QUEUE_VIEW

KNOWN = ["red square", "green square"]


def queue_ids(dataset) -> list[int]:
    return dataset.load_saved_view(REVIEW_QUEUE_VIEW).values("event_id")


def test_the_queue_is_one_patch_per_event_with_its_object_at_the_centre(scan_dataset):  # noqa: F811
    queue = scan_dataset.load_saved_view(REVIEW_QUEUE_VIEW)
    assert queue._is_patches and len(queue) == len(scan_dataset) == 4
    priorities = queue.values("review_priority")
    assert priorities == sorted(priorities, reverse=True)
    for sample in scan_dataset:
        (patch,) = sample[EVENT_PATCH_FIELD].detections
        (own,) = [box for box in sample.detections.detections if EVENT_BOX_TAG in box.tags]
        assert patch.event_id == sample.event_id and patch.label == sample.class_name
        px, py, pw, ph = patch.bounding_box
        bx, by, bw, bh = own.bounding_box
        assert px <= bx and py <= by and bx + bw <= px + pw + 1e-9 and by + bh <= py + ph + 1e-9
        # 20% of the box on each side, unless the frame's edge clips it: the object covers >= 1/1.4^2.
        assert bw * bh / (pw * ph) >= 1 / 1.4**2 - 1e-6
    by_look = scan_dataset.load_saved_view(LOOKS_QUEUE_VIEW)
    assert by_look._is_patches and by_look.values("look") == sorted(by_look.values("look"))


def test_decisions_made_with_keys_are_the_ones_harvest_reads(scan_dataset):  # noqa: F811
    queue = scan_dataset.load_saved_view(REVIEW_QUEUE_VIEW)
    head = event_sample_ids(queue, [])  # nothing selected: the queue's first
    assert head == [str(queue.first().sample_id)]
    apply_decision(scan_dataset, head, "confirmed")
    assert len(queue_ids(scan_dataset)) == 3 and scan_dataset[head[0]].event_id not in queue_ids(scan_dataset)

    patches = scan_dataset.load_saved_view(REVIEW_QUEUE_VIEW)
    second, third = event_sample_ids(patches, [patches.first().id, patches.skip(1).first().id])
    apply_decision(scan_dataset, [second], decision_tag(scan_dataset, "wrong-class", " blue square "))
    assert class_to_offer(scan_dataset) == "blue square"  # the next class-X form offers it first
    apply_decision(scan_dataset, [third], decision_tag(scan_dataset, "not-object"))
    decisions = {d.event_id: (d.verdict, d.class_name) for d in read_decisions(scan_dataset, known_classes=KNOWN)}
    expected = {
        scan_dataset[head[0]].event_id: ("confirmed", scan_dataset[head[0]].class_name),
        scan_dataset[second].event_id: ("wrong-class", "blue square"),
        scan_dataset[third].event_id: ("not-object", None),
    }
    assert decisions == expected
    assert all("on the patch of" in d.where for d in read_decisions(scan_dataset, known_classes=KNOWN))

    # Undo takes back the last decision, then the one before; then there is nothing left to undo.
    assert undo_last_decision(scan_dataset).tag == "not-object"
    assert undo_last_decision(scan_dataset).tag == "class:blue square"
    assert sorted(d.event_id for d in read_decisions(scan_dataset, known_classes=KNOWN)) == [scan_dataset[head[0]].event_id]
    undo_last_decision(scan_dataset)
    with pytest.raises(CvtriageError, match="^nothing to undo: no decision made in the App"):
        undo_last_decision(scan_dataset)
    assert len(queue_ids(scan_dataset)) == 4


def test_all_like_this_decides_the_undecided_events_of_one_look(scan_dataset):  # noqa: F811
    sample = scan_dataset.first()
    alike = events_like(scan_dataset, sample.id)
    same_look = scan_dataset.match({"look": sample.look})
    assert sorted(alike) == sorted(same_look.values("id")) and sample.id in alike
    apply_decision(scan_dataset, alike, "not-object")
    assert events_like(scan_dataset, sample.id) == []  # all decided now
    assert len(read_decisions(scan_dataset, known_classes=KNOWN)) == len(alike)
    undone = undo_last_decision(scan_dataset)
    assert sorted(undone.sample_ids) == sorted(alike) and len(queue_ids(scan_dataset)) == 4


def test_bad_input_is_one_line_and_changes_nothing(scan_dataset):  # noqa: F811
    first, second = scan_dataset.values("id")[:2]
    apply_decision(scan_dataset, [first], "confirmed")
    before = scan_dataset.values(f"{EVENT_PATCH_FIELD}.detections.tags")
    refusals = {
        "looks like a typo of 'red square' (if it is a new class, tick 'new class')":
            lambda: decision_tag(scan_dataset, "wrong-class", "red sqare"),
        "class: give the object's class": lambda: decision_tag(scan_dataset, "wrong-class", "  "),
        "names no class": lambda: decision_tag(scan_dataset, "wrong-class", "object"),
        "unknown decision 'maybe'": lambda: decision_tag(scan_dataset, "maybe"),
        "is already decided: undo that decision first": lambda: apply_decision(scan_dataset, [second, first], "not-object"),
        "no longer in dataset": lambda: apply_decision(scan_dataset, [second, "0" * 24], "not-object"),
        "not a decision tag": lambda: apply_decision(scan_dataset, [second], "confirm"),
        "no event selected": lambda: apply_decision(scan_dataset, [], "confirmed"),
        "not in this view": lambda: event_sample_ids(scan_dataset.load_saved_view(REVIEW_QUEUE_VIEW), ["0" * 24]),
    }  # fmt: skip
    for message, attempt in refusals.items():
        with pytest.raises(CvtriageError, match=re.escape(message)) as refused:
            attempt()
        assert "\n" not in str(refused.value)
    assert scan_dataset.values(f"{EVENT_PATCH_FIELD}.detections.tags") == before
    # A typo said to be a new class is one; a proposal is never confirmed.
    assert decision_tag(scan_dataset, "wrong-class", "red sqare", new_class=True) == "class:red sqare"
    proposal = scan_dataset[second]
    proposal.class_name = "object"
    proposal.save()
    with pytest.raises(CvtriageError, match="confirms a proposal"):
        apply_decision(scan_dataset, [second], "confirmed")
    assert [d.event_id for d in read_decisions(scan_dataset, known_classes=KNOWN)] == [scan_dataset[first].event_id]


def test_the_plugin_ships_in_the_package():
    assert {"fiftyone.yml", "__init__.py", "keys.js"} <= {path.name for path in REVIEW_PLUGIN_DIR.iterdir()}
