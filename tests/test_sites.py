"""`cvtriage sites`: two flights over one synthetic site (their objects placed from their true boxes,
as benchmarks/ground_positions.py does), changes found against the site's plan; bad input in one
line; the changes in FiftyOne; and reviewers' decisions carried to an object's other sightings."""

import json
import shutil

import fiftyone as fo
import pytest
from ground_positions import flight_files, place_oracle
from typer.testing import CliRunner

from cvtriage.cli import app
from cvtriage.review.decisions import read_decisions
from cvtriage.scan.store import review_queue, save_review_queues
from cvtriage.synth.flight_log import TelemetryNoise
from cvtriage.synth.site import SiteSpec
from cvtriage.synth.video import FlyoverSpec
from cvtriage.telemetry.objects import OBJECTS_JSON
from cvtriage.telemetry.sites_report import run_sites

SPEC = FlyoverSpec(seconds=40, seed=5, width=320, height=180, fps=5.0, noise=TelemetryNoise(0.3, 0.3, 0.5, offset_m=3.0))
EXPECTED = {"added": "new", "removed": "gone", "moved": "moved"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two flights' results folders, each event's true object, and the site's plan of changes."""
    work = tmp_path_factory.mktemp("site")
    folders, true_objects = [], []
    for flight in (0, 1):
        srt, truth, flyover = flight_files(work, SPEC, site=SiteSpec(2, flight, 0.4))
        records, _ = place_oracle(srt, truth, work / f"flight-{flight + 1}")
        folders.append(work / f"flight-{flight + 1}")
        true_objects.append({record["id"]: record["truth"]["object"] for record in records})
    return folders, true_objects, flyover.plan


def test_changes_between_flights_are_found_after_aligning_them(site, tmp_path):
    folders, true_objects, plan = site
    assert {change["change"] for change in plan.changes} == {"added", "removed", "moved"}
    result = run_sites(folders, out=tmp_path / "sites", dataset=None)
    [comparison] = result.comparisons
    assert 2.0 < (comparison.offset[0] ** 2 + comparison.offset[1] ** 2) ** 0.5 < 4.5  # the 3 m offset, and noise
    reported = {}
    for change in comparison.changes:
        side, record = (0, change.earlier) if change.earlier else (1, change.later)
        reported[true_objects[side][record["event_ids"][0]]] = change.status
    for change in plan.changes:
        assert reported[change["slot"]] == EXPECTED[change["change"]], change
    changed = {change["slot"] for change in plan.changes}
    assert all(status in ("present", "not covered") for slot, status in reported.items() if slot not in changed)
    rows = (tmp_path / "sites" / "sites.csv").read_text().splitlines()
    assert rows[0].startswith("earlier,later,status,class_name") and len(rows) == 1 + len(comparison.changes)
    document = json.loads((tmp_path / "sites" / "sites.json").read_text())
    assert document["comparisons"][0]["counts"]["moved"] == sum(c["change"] == "moved" for c in plan.changes)
    assert (tmp_path / "sites" / "sites.png").stat().st_size > 10_000


def test_scans_of_different_places_are_refused_in_one_line(site, tmp_path):
    folders, _, _ = site
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(folders[1], elsewhere)
    document = json.loads((elsewhere / OBJECTS_JSON).read_text())
    for points in [document["path"], *document["coverage"]]:
        for point in points:
            point[0] += 0.5  # 55 km north
    for record in document["objects"]:
        record["latitude"] += 0.5
    (elsewhere / OBJECTS_JSON).write_text(json.dumps(document))
    result = CliRunner().invoke(app, ["sites", str(folders[0]), str(elsewhere), "--out", str(tmp_path / "o"), "--no-dataset"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"cvtriage: error: {folders[0].name} and elsewhere are scans of different places: their flights come no "
        "closer than 55.5 km (no ground seen by both)"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["sites", "{a}"], "give two or more scan results folders of one site"),
        (["sites", "{a}", "{a}"], "the same results folder is given twice"),
        (["sites", "{a}", "{tmp}"], "no objects.json (a scan of a video without a flight log"),
        (["sites", "{a}", "{tmp}/nope"], "nope: not found"),
        (["sites", "{a}", "{b}/objects.json"], "objects.json: not a scan's results folder"),
        (["sites", "{a}", "{b}", "--dataset", "no-such-dataset-x", "--out", "{tmp}/out"], "'no-such-dataset-x' does not exist"),
        (["sites", "{a}", "{b}", "--gate", "0"], "--gate 0: metres, above 0 and at most 50"),
        (["synth", "video", "{tmp}/x.mp4", "--telemetry-noise", "1,2"], "--telemetry-noise 1,2: expected GPS_M,ALT_M,HEADING_DEG"),
        (["synth", "video", "{tmp}/x.mp4", "--where", "95,3"], "--where 95,3: need a latitude within 85 degrees"),
        (["synth", "video", "{tmp}/x.mp4", "--site", "1"], "--site 1: a site is flown 2 to 20 times"),
    ],
)
def test_bad_input_is_one_line(site, tmp_path, arguments, message):
    folders, _, _ = site
    names = {"a": folders[0], "b": folders[1], "tmp": tmp_path}
    result = CliRunner().invoke(app, [argument.format(**names) for argument in arguments])
    assert result.exit_code != 0
    [line] = result.output.strip().splitlines()
    assert line.startswith("cvtriage: error: ") and message in line
    assert not (tmp_path / "out").exists()  # nothing written before the error


def test_changes_are_marked_on_the_sightings_in_fiftyone(site, tmp_path):
    folders, _, plan = site
    dataset = fo.Dataset("sites-test", persistent=True)
    for folder in folders:
        for record in json.loads((folder / OBJECTS_JSON).read_text())["objects"]:
            for event_id in record["event_ids"]:
                dataset.add_sample(fo.Sample(filepath=str(folder / f"{event_id}.jpg"), scan_results=str(folder.resolve()),
                                             event_id=event_id, source_video=str(folder), object_id=record["id"]))  # fmt: skip
    result = run_sites(folders, out=tmp_path / "sites", dataset="sites-test")
    counts = result.comparisons[0].counts()
    assert result.marked["new"] == counts["new"] and result.marked["gone"] == counts["gone"]
    assert result.marked["moved"] == counts["moved"] and result.marked["present"] == counts["present"]
    assert len(dataset.load_saved_view("site-gone")) == counts["gone"] == sum(c["change"] == "removed" for c in plan.changes)


def test_a_decision_on_one_sighting_holds_for_the_objects_other_sightings():
    dataset = fo.Dataset("carry-test")
    rows = [(1, 7, ["confirmed"]), (2, 7, []), (3, 8, ["not-object"]), (4, 8, ["confirmed"]), (5, 8, []), (6, None, [])]
    for event_id, object_id, tags in rows:
        dataset.add_sample(fo.Sample(filepath=f"/x/{event_id}.jpg", tags=["flagged", *tags], source_video="/v.mp4",
                                     event_id=event_id, class_name="ladder", object_id=object_id,
                                     detections=fo.Detections()))  # fmt: skip
    decisions = {decision.event_id: decision for decision in read_decisions(dataset)}
    assert decisions[2].verdict == "confirmed" and "carried from event 1" in decisions[2].where
    assert 5 not in decisions and 6 not in decisions  # sightings decided two ways carry nothing over
    assert decisions[3].verdict == "not-object" and decisions[4].verdict == "confirmed"
    # The review queue does not ask about a sighting whose object is decided: event 2.
    save_review_queues(dataset)
    assert sorted(review_queue(dataset).values("event_id")) == [5, 6]
