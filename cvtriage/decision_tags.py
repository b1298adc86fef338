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


def decided_by_another_sighting(samples) -> list[str]:
    """The ids of the undecided event samples whose object (`object_id`: one thing on the ground,
    seen on several passes of one video) has other sightings decided, all with the same tags:
    harvest carries that decision to them (cvtriage.review.decisions.carried_to_sightings), so the
    review queue does not ask again. Sightings decided two ways leave the rest in the queue."""
    schema = samples.get_field_schema()
    if "object_id" not in schema:
        return []
    label_fields = [f"{field}.detections.tags" for field in DECIDED_LABEL_FIELDS if field in schema]
    sightings: dict[tuple, list[tuple[str, frozenset]]] = {}
    for sample_id, video, object_id, tags, *label_tags in zip(*samples.values(["id", "source_video", "object_id", "tags", *label_fields])):
        if video is None or object_id is None:
            continue
        decided = {tag for tag in tags or () if decision_of_tag(tag)}
        for labels in label_tags:
            decided |= {tag for label in labels or () for tag in label or () if decision_of_tag(tag)}
        sightings.setdefault((video, object_id), []).append((sample_id, frozenset(decided)))
    carried = []
    for seen in sightings.values():
        if len({decided for _, decided in seen if decided}) == 1:
            carried += [sample_id for sample_id, decided in seen if not decided]
    return carried
