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
