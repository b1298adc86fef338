"""The reviewers' decision vocabulary: tags on an event's sample, its own box or its patch (the
review queue's, `event_patch`) in FiftyOne.

- `confirmed`: the right object, the right class;
- `class:<name>`: an object, but a <name> (a class the model does not know yet starts this way);
- `not-object`: nothing worth a box (it becomes a hard negative).

Shared by the scan's store (its review-queue view holds the undecided events) and the review
loop, which reads the decisions back (cvtriage.review.decisions).
"""

from __future__ import annotations

CONFIRMED = "confirmed"


NOT_OBJECT = "not-object"


WRONG_CLASS = "wrong-class"  # the CSV's word for a class:<name> tag


CLASS_PREFIX = "class:"


# The class of a proposal scan's events (cvtriage.scan.proposals): an object nobody has named
# yet. Only `class:<name>` or `not-object` decide one; `confirmed` would teach no class.
PROPOSAL_CLASS = "object"


VERDICTS = (CONFIRMED, WRONG_CLASS, NOT_OBJECT)


# Tags cvtriage itself puts on scan samples and boxes: not decisions.
SCAN_TAGS = {"flagged", "event"}


def decision_of_tag(tag: str) -> tuple[str, str | None] | None:
    """(verdict, class or None) for a decision tag, None for any other tag."""
    if tag == CONFIRMED:
        return CONFIRMED, None
    if tag == NOT_OBJECT:
        return NOT_OBJECT, None
    if tag.startswith(CLASS_PREFIX) and tag[len(CLASS_PREFIX) :].strip():
        return WRONG_CLASS, tag[len(CLASS_PREFIX) :].strip()
    return None


# The event's patch: its own box with some ground around it, what the review queue shows
# (cvtriage.scan.store). A tag on it in the queue is a decision.
EVENT_PATCH_FIELD = "event_patch"
# Label fields whose labels carry decisions: the keyframe's boxes and the event's patch.
DECIDED_LABEL_FIELDS = ("detections", EVENT_PATCH_FIELD)


def undecided_filter():
    """A FiftyOne expression true for event samples with no decision tag on the sample, its boxes or its patch."""
    from fiftyone import ViewField as F

    def has_decision(tags):
        return tags.filter((F() == CONFIRMED) | (F() == NOT_OBJECT) | F().starts_with(CLASS_PREFIX)).length() > 0

    undecided = ~has_decision(F("tags"))
    for field in DECIDED_LABEL_FIELDS:  # a sample without the field (an older scan) has no tags there
        undecided &= ~(F(f"{field}.detections").filter(has_decision(F("tags"))).length() > 0)
    return undecided


def sightings(samples, fields: list[str]) -> list[list[tuple]]:
    """The event samples grouped by the object on the ground they see (one `source_video`, one
    `object_id`: the same thing seen on several passes), each sample the tuple of its `fields`'
    values; none when the samples have no `object_id` (scans before it)."""
    if "object_id" not in samples.get_field_schema():
        return []
    groups: dict[tuple, list[tuple]] = {}
    for video, object_id, *values in zip(*samples.values(["source_video", "object_id", *fields])):
        if video is not None and object_id is not None:
            groups.setdefault((video, int(object_id)), []).append(tuple(values))
    return list(groups.values())


def carried_decision(decisions: list, alike):
    """The decision one object's decided sightings (the truthy items of `decisions`, one a
    sighting) agree on by `alike(a, b)`, which holds for its undecided ones too; None when none
    is decided or they were decided two ways. The one rule of the review queue (which does not
    ask again) and of harvest (which carries the decision: cvtriage.review.decisions)."""
    decided = [decision for decision in decisions if decision]
    if decided and all(alike(decided[0], decision) for decision in decided[1:]):
        return decided[0]
    return None


def decided_by_another_sighting(samples) -> list[str]:
    """The ids of the undecided event samples whose object has other sightings decided, all with
    the same tags (`carried_decision`): harvest carries that decision to them, so the review queue
    does not ask again. Sightings decided two ways leave the rest in the queue."""
    schema = samples.get_field_schema()
    label_fields = [f"{field}.detections.tags" for field in DECIDED_LABEL_FIELDS if field in schema]
    carried = []
    for seen in sightings(samples, ["id", "tags", *label_fields]):
        decided = [(sample_id, _decision_tags(tags, label_tags)) for sample_id, tags, *label_tags in seen]
        if carried_decision([tags for _, tags in decided], frozenset.__eq__) is not None:
            carried += [sample_id for sample_id, tags in decided if not tags]
    return carried


def _decision_tags(tags, label_tags) -> frozenset:
    """The decision tags of a sample: on it, and on its labels (each field's list of label tags)."""
    decided = {tag for tag in tags or () if decision_of_tag(tag)}
    for labels in label_tags:
        decided |= {tag for label in labels or () for tag in label or () if decision_of_tag(tag)}
    return frozenset(decided)
