"""cvtriage's review plugin for the FiftyOne App: decide on the review queue's patches with a key.

Keys (keys.js): c confirm, x not an object, r class X, a the same for all like this, u undo.
Each operator acts on the selected patches, or with none selected on the queue's first one. The
work is done by cvtriage.review.app_decisions; this is the App's side: forms, errors as one-line
notifications, and a refreshed queue after each decision.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from cvtriage.decision_tags import CONFIRMED, NOT_OBJECT, WRONG_CLASS
from cvtriage.errors import CvtriageError
from cvtriage.scan.looks import LOOK_FIELD
from cvtriage.review.app_decisions import (
    AppDecision,
    apply_decision,
    class_to_offer,
    decision_tag,
    event_sample_ids,
    events_like,
    known_classes,
    undo_last_decision,
)

VERDICT_CHOICES = {CONFIRMED: "confirmed", NOT_OBJECT: "not an object", WRONG_CLASS: "another class"}


def _refresh(ctx, done: AppDecision) -> dict:
    """The queue without the events just decided (the saved view's patches are made again)."""
    ctx.ops.clear_selected_samples()
    ctx.ops.reload_dataset()
    ctx.ops.notify(done.describe(), variant="success")
    return {"decided": done.describe()}


def _failed(ctx, error: CvtriageError) -> dict:
    ctx.ops.notify(str(error), variant="error")
    return {"error": str(error)}


def _class_inputs(ctx, inputs: types.Object, default: str | None) -> None:
    choices = types.AutocompleteView(allow_user_input=True)
    for name in known_classes(ctx.dataset):
        choices.add_choice(name, label=name)
    inputs.str("class_name", label="Class (choose, or type a new one)", default=default, view=choices)
    inputs.bool("new_class", label="new class", default=False,
                description="a new class whose name looks like a known one's (the typo check lets it through)")  # fmt: skip


class Decide(foo.Operator):
    """Confirm or reject the selected patches (or the queue's first)."""

    verdict = CONFIRMED

    def execute(self, ctx):
        try:
            ids = event_sample_ids(ctx.view, ctx.selected)
            return _refresh(ctx, apply_decision(ctx.dataset, ids, self.verdict))
        except CvtriageError as error:
            return _failed(ctx, error)


class Confirm(Decide):
    @property
    def config(self):
        return foo.OperatorConfig(name="confirm", label="cvtriage: confirm (key c)")


class NotObject(Decide):
    verdict = NOT_OBJECT

    @property
    def config(self):
        return foo.OperatorConfig(name="not_object", label="cvtriage: not an object (key x)")


class DecideClass(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="decide_class", label="cvtriage: class X (key r)", dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        _class_inputs(ctx, inputs, class_to_offer(ctx.dataset))
        return types.Property(inputs, view=types.View(label="An object, of another class"))

    def execute(self, ctx):
        try:
            tag = decision_tag(ctx.dataset, WRONG_CLASS, ctx.params.get("class_name"), bool(ctx.params.get("new_class")))
            ids = event_sample_ids(ctx.view, ctx.selected)
            return _refresh(ctx, apply_decision(ctx.dataset, ids, tag))
        except CvtriageError as error:
            return _failed(ctx, error)


class AllLikeThis(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="all_like_this", label="cvtriage: the same for all like this (key a)", dynamic=True)

    def resolve_input(self, ctx):
        inputs = types.Object()
        try:
            reference = event_sample_ids(ctx.view, ctx.selected)[0]
            alike = events_like(ctx.dataset, reference)
        except CvtriageError as error:
            inputs.view("problem", types.Error(label=str(error)))
            return types.Property(inputs)
        look = ctx.dataset[reference][LOOK_FIELD]
        inputs.view("count", types.Notice(label=f"Applies to {len(alike)} undecided events of look {look}"))
        verdicts = types.RadioGroup()
        for value, label in VERDICT_CHOICES.items():
            verdicts.add_choice(value, label=label)
        inputs.enum("verdict", verdicts.values(), default=NOT_OBJECT, label="Decision", view=verdicts)
        if ctx.params.get("verdict") == WRONG_CLASS:
            _class_inputs(ctx, inputs, None)
        return types.Property(inputs, view=types.View(label=f"The same for all {len(alike)} like this"))

    def execute(self, ctx):
        try:
            verdict = ctx.params.get("verdict", NOT_OBJECT)
            tag = decision_tag(ctx.dataset, verdict, ctx.params.get("class_name"), bool(ctx.params.get("new_class")))
            alike = events_like(ctx.dataset, event_sample_ids(ctx.view, ctx.selected)[0])
            return _refresh(ctx, apply_decision(ctx.dataset, alike, tag))
        except CvtriageError as error:
            return _failed(ctx, error)


class UndoDecision(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(name="undo_decision", label="cvtriage: undo the last decision (key u)")

    def execute(self, ctx):
        try:
            undone = undo_last_decision(ctx.dataset)
        except CvtriageError as error:
            return _failed(ctx, error)
        ctx.ops.reload_dataset()
        ctx.ops.notify(f"undone: {undone.describe()}", variant="info")
        return {"undone": undone.describe()}


def register(plugin):
    for operator in (Confirm, NotObject, DecideClass, AllLikeThis, UndoDecision):
        plugin.register(operator)
