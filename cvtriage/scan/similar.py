"""Find more like this: every event's detector features (cvtriage.scan.features) on its sample and
in a FiftyOne similarity index over the whole dataset (all its videos), so that from one event a
reviewer ranks the undecided events of every video by how alike the detector finds them: in the
App (select an event, "sort by similarity", brain key `features`) or with `more_like_this`.

The index is cosine over the embeddings as they are: centring or whitening them over the dataset
first gained nothing measurable (docs/benchmarks.md: the variants measured). A dataset whose scans
have no features (an OpenVINO export) is ranked by the colour looks instead (cvtriage.scan.looks).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cvtriage.decision_tags import undecided_filter
from cvtriage.errors import CvtriageError
from cvtriage.scan.looks import BRAIN_KEY as LOOKS_BRAIN_KEY
from cvtriage.scan.results import EVENT_FEATURES_NPY, EVENTS_JSON

FEATURES_FIELD = "event_features"
FEATURES_BRAIN_KEY = "features"
MORE_LIKE_THIS = 20  # events a ranking shows by default


def read_event_features(folder: Path) -> dict[int, np.ndarray]:
    """Event id -> features of a results folder (event_features.npy, rows in events.json's order);
    empty when the scan had none. A file that does not fit its events.json: one line, raised."""
    path = Path(folder) / EVENT_FEATURES_NPY
    if not path.is_file():
        return {}
    try:
        ids = [int(record["id"]) for record in json.loads((Path(folder) / EVENTS_JSON).read_text(encoding="utf-8"))["events"]]
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as error:
        raise CvtriageError(f"{path}: cannot read it ({error})") from None
    if rows.ndim != 2 or len(rows) != len(ids):
        raise CvtriageError(f"{path}: {rows.shape[0] if rows.ndim else 0} rows for {len(ids)} events (not this scan's: scan again)")
    return {event_id: row for event_id, row in zip(ids, rows) if np.isfinite(row).all()}


def index_features(samples, field: str = FEATURES_FIELD, brain_key: str = FEATURES_BRAIN_KEY) -> None:
    """Refresh the similarity index `brain_key` over the samples (a dataset or view: event
    samples, or their patches) whose `field` holds features; dropped when fewer than two have any."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    if brain_key in samples.list_brain_runs():
        samples.delete_brain_run(brain_key)
    if field not in samples.get_field_schema(flat=True):
        return
    embedded = samples.match(F(field) != None)  # noqa: E711
    if len(embedded) < 2:
        return
    fob.compute_similarity(embedded, embeddings=field, brain_key=brain_key, backend="sklearn", progress=False)


def similarity_key(dataset) -> str:
    """The index a ranking uses: the detector's features, or the colour looks where no scan had any."""
    runs = dataset.list_brain_runs()
    if FEATURES_BRAIN_KEY in runs:
        return FEATURES_BRAIN_KEY
    if LOOKS_BRAIN_KEY in runs:
        return LOOKS_BRAIN_KEY
    raise CvtriageError(f"FiftyOne dataset '{_name(dataset)}': no similarity index (scan or store its videos again)")


def more_like_this(dataset, event, k: int = MORE_LIKE_THIS, brain_key: str | None = None):
    """The undecided events of every video of `dataset` most like `event` (a sample, or its id),
    most alike first, at most `k`, the event itself left out: a view of the dataset."""
    from bson import ObjectId
    from bson.errors import InvalidId

    sample_id = getattr(event, "id", event)
    try:
        ObjectId(str(sample_id))
    except (InvalidId, TypeError):
        raise CvtriageError(f"more like this: '{sample_id}' is not a sample id of dataset '{_name(dataset)}'") from None
    if not len(dataset.select(str(sample_id))):
        raise CvtriageError(f"more like this: dataset '{_name(dataset)}' has no sample {sample_id}")
    key = brain_key or similarity_key(dataset)
    index = dataset.load_brain_results(key)
    if str(sample_id) not in set(index.sample_ids):
        raise CvtriageError(f"more like this: sample {sample_id} has no embedding in index '{key}' (scanned without one)")
    query, _, _ = index.get_embeddings(sample_ids=[str(sample_id)])
    others = dataset.match(undecided_filter()).exclude(str(sample_id))
    return others.sort_by_similarity(query[0], k=k, brain_key=key)


def _name(samples) -> str:
    """The dataset's name, of a dataset or of a view of one (a patches view, say)."""
    return getattr(samples, "dataset_name", None) or samples.name
