"""Find more like this: every event's detector features (cvtriage.scan.features) on its sample and
in a FiftyOne similarity index over the whole dataset (all its videos), so that from one event a
reviewer ranks the undecided events of every video by how alike the detector finds them: in the
App (select an event, "sort by similarity", brain key `features`, or `features_patches` in the
review queue's patches) or with `more_like_this`.

The index is cosine over the embeddings whitened by how each object's own features vary along its
track (`within_track_whitening`): the scan's tracks are free pairs of "the same object", and what
changes within them is not what tells objects apart (docs/benchmarks.md: the variants measured).
A dataset whose scans have no features (an OpenVINO export) is ranked by the colour looks instead
(cvtriage.scan.looks).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from cvtriage.decision_tags import EVENT_PATCH_FIELD, undecided_filter
from cvtriage.errors import CvtriageError
from cvtriage.scan.looks import BRAIN_KEY as LOOKS_BRAIN_KEY
from cvtriage.scan.results import EVENT_FEATURES_NPY, EVENTS_JSON, TRACK_RESIDUALS_NPY

FEATURES_FIELD = "event_features"
FEATURES_BRAIN_KEY = "features"
# The same embeddings on each event's patch (its `event_patch` label): in the review queue, a
# patches view, the App sorts by similarity only with an index of those patches.
PATCHES_BRAIN_KEY = "features_patches"
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


def within_track_whitening(folders) -> np.ndarray | None:
    """The linear map (D, D) that whitens how one object's features vary along its track, from
    the residuals the results `folders` keep (track_residuals.npy): the within-class scatter of a
    linear discriminant, each track its own class, its covariance shrunk by Ledoit-Wolf. Directions
    in which one object's features swing from frame to frame (its angle, blur, size in the frame)
    then weigh little in the cosine, those that tell objects apart more. None with too few."""
    from sklearn.covariance import LedoitWolf

    parts = []
    for folder in folders:
        path = Path(folder) / TRACK_RESIDUALS_NPY
        if not path.is_file():
            continue
        try:
            parts.append(np.load(path, allow_pickle=False).astype(np.float64))
        except (OSError, ValueError) as error:
            raise CvtriageError(f"{path}: cannot read it ({error})") from None
    widths = {part.shape[1] for part in parts if part.ndim == 2 and len(part)}
    if len(widths) != 1:
        return None  # none, or scans by models of other widths: no common space to whiten
    residuals = np.concatenate([part for part in parts if part.ndim == 2 and len(part)])
    if len(residuals) <= residuals.shape[1]:
        return None
    values, basis = np.linalg.eigh(LedoitWolf(assume_centered=True).fit(residuals).covariance_)
    return basis / np.sqrt(np.maximum(values, 1e-12))


def index_features(
    samples,
    field: str = FEATURES_FIELD,
    brain_key: str = FEATURES_BRAIN_KEY,
    patches_field: str = EVENT_PATCH_FIELD,
    patches_brain_key: str = PATCHES_BRAIN_KEY,
) -> None:
    """Refresh the similarity index `brain_key` over the samples (a dataset or view of event
    samples) whose `field` holds features, whitened within tracks over their scans
    (`within_track_whitening`, from each sample's `scan_results` folder), and `patches_brain_key`,
    the same embeddings on each sample's one `patches_field` patch; dropped when fewer than two
    have any."""
    import fiftyone.brain as fob
    from fiftyone import ViewField as F

    for key in (brain_key, patches_brain_key):
        if key in samples.list_brain_runs():
            samples.delete_brain_run(key)
    if field not in samples.get_field_schema(flat=True):
        return
    embedded = samples.match(F(field) != None)  # noqa: E711
    if len(embedded) < 2:
        return
    ids, values = embedded.values("id"), embedded.values(field)
    width = Counter(len(vector) for vector in values).most_common(1)[0][0]
    if any(len(vector) != width for vector in values):  # scans by models of other widths: the usual one kept
        embedded = embedded.select([i for i, vector in zip(ids, values) if len(vector) == width], ordered=True)
        values = [vector for vector in values if len(vector) == width]
    vectors = np.array(values, np.float32)
    whitening = within_track_whitening(sorted(set(embedded.values("scan_results"))))
    if whitening is not None and whitening.shape[0] == vectors.shape[1]:
        vectors = (vectors @ whitening).astype(np.float32)
    fob.compute_similarity(embedded, embeddings=vectors, brain_key=brain_key, backend="sklearn", progress=False)
    with_patch = embedded.match(F(f"{patches_field}.detections").length() == 1) if patches_field in samples.get_field_schema() else []
    if len(with_patch) >= 2:
        rows = {sample_id: row for sample_id, row in zip(embedded.values("id"), vectors)}
        fob.compute_similarity(
            with_patch,
            patches_field=patches_field,
            embeddings={sample_id: rows[sample_id][None] for sample_id in with_patch.values("id")},
            brain_key=patches_brain_key,
            backend="sklearn",
            progress=False,
        )


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
