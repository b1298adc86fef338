"""A scan whose results are written but cannot be stored in FiftyOne (the database busy, down or
unreachable) keeps its results folder and says in one line how to store it later; `cvtriage store`
then stores it from the folder alone, as the scan would have, and marks the scan finished."""

from __future__ import annotations

import datetime
import json
import uuid

import numpy as np
import pytest
from typer.testing import CliRunner

from cvtriage import database
from cvtriage.cli import app
from cvtriage.config import load_scan_config
from cvtriage.errors import CvtriageError
from cvtriage.paths import DEMO_WEIGHTS
from cvtriage.scan.log import scan_is_finished
from cvtriage.scan.pipeline import run_scan
from cvtriage.scan.similar import FEATURES_BRAIN_KEY, FEATURES_FIELD
from cvtriage.synth.video import FlyoverSpec, generate_video

runner = CliRunner()
STORED_FIELDS = ("event_id", "class_name", "timestamp", "frame_number", "review_priority", "views", "look")


@pytest.fixture(scope="module")
def flyover(tmp_path_factory):
    video = tmp_path_factory.mktemp("later") / "later.mp4"
    generate_video(video, FlyoverSpec(seconds=4, width=640, height=360, seed=5))
    return video


def settings_for(tmp_path, dataset):
    return load_scan_config(out=str(tmp_path / "runs"), device="cpu", dataset=dataset, weights=str(DEMO_WEIGHTS))


def stored(dataset_name):
    import fiftyone as fo

    dataset = fo.load_dataset(dataset_name)
    rows = sorted(zip(*dataset.values(list(STORED_FIELDS))))
    boxes = sorted((sample.event_id, len(sample.detections.detections)) for sample in dataset)
    return rows, boxes


def stored_features(dataset_name):
    import fiftyone as fo

    dataset = fo.load_dataset(dataset_name)
    assert FEATURES_BRAIN_KEY in dataset.list_brain_runs()
    return dict(zip(dataset.values("event_id"), dataset.values(FEATURES_FIELD)))


def test_a_busy_database_keeps_the_results_and_cvtriage_store_stores_them_later(flyover, tmp_path, monkeypatch):
    from fiftyone.core.odm.database import get_db_conn

    name = f"later-{uuid.uuid4().hex[:8]}"
    settings = settings_for(tmp_path, name)
    # Another writer holds the dataset's lease (cvtriage.database), for an hour.
    locks = get_db_conn()[database.LOCKS_COLLECTION]
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    locks.insert_one({"_id": f"dataset:{name}", "holder": "another scan", "expires": expires})
    monkeypatch.setattr(database, "LOCK_WAIT_S", 0.5)
    try:
        with pytest.raises(CvtriageError) as raised:
            run_scan(flyover, settings)
    finally:
        locks.delete_one({"_id": f"dataset:{name}"})
    folder = tmp_path / "runs" / "later"
    message = str(raised.value)
    assert "\n" not in message and "another scan" in message
    assert message.endswith(f"store them later with: cvtriage store {folder} --dataset {name}")
    events = json.loads((folder / "events.json").read_text())["events"]
    assert events and not scan_is_finished(flyover, settings)  # kept, and not marked done

    result = runner.invoke(app, ["store", str(folder), "--dataset", name])
    assert result.exit_code == 0, result.output
    assert f"Stored {len(events)} events" in result.output
    assert scan_is_finished(flyover, settings)

    # The same samples as a scan that stored them at once (boxes to the 0.1 px of detections.csv).
    direct = f"direct-{uuid.uuid4().hex[:8]}"
    run_scan(flyover, settings_for(tmp_path / "direct", direct))
    assert stored(name) == stored(direct)
    assert sorted(event["id"] for event in events) == sorted(row[0] for row in stored(name)[0])
    # The detector's features too (kept in the folder: the model is not run again).
    later, now = stored_features(name), stored_features(direct)
    assert later.keys() == now.keys() and len(later) == len(events)
    assert all(float(np.dot(later[event_id], now[event_id])) > 0.9999 for event_id in later)


def test_store_bad_inputs_are_one_line_each(flyover, tmp_path):
    def one_line(result, fragment):
        lines = result.output.strip().splitlines()
        assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("cvtriage: error: "), result.output
        assert fragment in lines[0], lines[0]

    one_line(runner.invoke(app, ["store", str(tmp_path / "nothing")]), "not a scan results folder")
    settings = settings_for(tmp_path, None)
    run_scan(flyover, settings)
    folder = tmp_path / "runs" / "later"
    moved = tmp_path / "moved.mp4"
    generate_video(moved, FlyoverSpec(seconds=2, width=640, height=360, seed=9))  # another video in its place
    events_json = folder / "events.json"
    document = json.loads(events_json.read_text())
    document["video"]["path"] = str(moved)
    events_json.write_text(json.dumps(document))
    one_line(runner.invoke(app, ["store", str(folder), "--dataset", f"x-{uuid.uuid4().hex[:6]}"]), "scan it again")
