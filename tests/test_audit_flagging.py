"""What the audit flags: spurious labels on busy ground, each kind's threshold by the planted-error
rule, findings that share a cause grouped (and border-touching missing boxes switched off), and
other tools' files (a class the model calls by another name, a COCO file naming absent images)."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from test_audit import corrupted_dataset, image_labels  # noqa: F401 (corrupted_dataset: a fixture)
from typer.testing import CliRunner

from cvtriage.audit.findings import KINDS, Finding, kind_view_name
from cvtriage.audit.groups import flag_findings, group_findings
from cvtriage.audit.image_labels import read_image_labels
from cvtriage.audit.scoring import rank_findings, weigh_by_image_contrast
from cvtriage.audit.store import store_findings
from cvtriage.audit.thresholds import choose_thresholds, flag_thresholds
from cvtriage.cli import app
from cvtriage.config import AuditConfig


def _street(seed: int = 0, size: int = 320) -> np.ndarray:
    """Asphalt crossed by dashed lane markings and dotted with drain covers, as seen from a drone
    (RGB): ground on which an empty box often holds something with contrast."""
    import cv2

    rng = np.random.default_rng(seed)
    ground = np.clip(rng.normal(95, 6, (size, size, 3)), 0, 255).astype(np.uint8)
    for y in range(20, size, 60):  # lane markings every 60 px, dashes 30 px long
        for x in range(0, size, 60):
            cv2.line(ground, (x, y), (x + 30, y), (232, 232, 226), 4)
    for cx in range(45, size, 90):  # drain covers between the lines
        for cy in range(50, size, 120):
            cv2.circle(ground, (cx, cy), 9, (45, 45, 48), -1)
    return ground


def test_a_spurious_box_on_busy_ground_outranks_a_missed_object_on_it(tmp_path):
    import cv2

    from cvtriage.synth.objects import draw_bag
    from cvtriage.synth.scene import Scene

    scene = Scene(_street(), sun=(0.6, 0.4), shadow_strength=0.5)
    bag = scene.sprite(draw_bag(np.random.default_rng(3)), center=(250.0, 250.0), size=40, angle=0.6)
    scene.paint(bag, class_id=0)
    x1, y1, x2, y2 = scene.objects[0].visible.box()
    image_path = str(tmp_path / "street.jpg")
    cv2.imwrite(image_path, cv2.cvtColor(scene.canvas, cv2.COLOR_RGB2BGR))
    on_bag = [x1 / 320, y1 / 320, x2 / 320, y2 / 320]
    # A label with no object under it, framing a drain cover: it stands out from the asphalt
    # around it more than the bag does, so contrast alone would take it for the object.
    on_drain = [124 / 320, 38 / 320, 146 / 320, 62 / 320]
    # The model saw nothing at the drain and the bag only faintly (0.2: missed at any usual
    # threshold); it sees bags of this size well elsewhere.
    street = image_labels(0, [("bag", on_bag), ("bag", on_drain)], [("bag", on_bag, 0.2)])
    street.image_path = image_path
    others = [image_labels(i, [("bag", on_bag)], [("bag", on_bag, 0.9)]) for i in range(1, 21)]
    spurious = {f.label_id: f for f in weigh_by_image_contrast(rank_findings([street, *others], AuditConfig()))
                if f.kind == "spurious"}
    drain, missed = spurious["l0-1"], spurious["l0-0"]
    assert drain.score > 2 * missed.score
    # Without the model's faint box it is the other way round: the image alone cannot tell them apart.
    unseen = image_labels(0, [("bag", on_bag), ("bag", on_drain)], [])
    unseen.image_path = image_path
    spurious = {f.label_id: f for f in weigh_by_image_contrast(rank_findings([unseen, *others], AuditConfig()))
                if f.kind == "spurious"}
    assert spurious["l0-1"].score < spurious["l0-0"].score


def _random_findings(rng, count):
    return [Finding(str(rng.choice(KINDS)), float(rng.choice([rng.uniform(0, 1), 0.0], p=[0.8, 0.2])), "s", "i")
            for _ in range(count)]


@pytest.mark.parametrize("seed", range(5))
def test_each_kinds_threshold_is_the_lowest_score_where_planted_errors_are_half_the_findings(seed):
    rng = np.random.default_rng(seed)
    findings = _random_findings(rng, 300)
    planted = {kind: list(np.clip(rng.normal(0.7, 0.25, 100), 0, 1)) for kind in KINDS}
    drawn = AuditConfig(flag_precision=float(rng.uniform(0.3, 0.8)), assumed_error_rate=float(rng.uniform(0.02, 0.2)))
    labels = 1000
    # The drawn settings, and stricter ones: the rule holds for each.
    for config in (drawn, drawn.model_copy(update={"flag_precision": 0.9}), drawn.model_copy(update={"assumed_error_rate": 0.01})):
        thresholds = flag_thresholds(findings, planted, labels, config)
        for kind in KINDS:
            scores = [f.score for f in findings if f.kind == kind]
            expected_errors = config.assumed_error_rate * labels / 4

            def holds(cut):
                # Flagging from `cut` flags what any threshold down to the next lower score would.
                below = max([score for score in scores if score < cut], default=0.0)
                errors = expected_errors * np.mean(np.asarray(planted[kind]) > below)
                return errors >= config.flag_precision * sum(score >= cut for score in scores)

            # The rule by its definition, score by score.
            passing = [score for score in scores if score > 0 and holds(score)]
            assert thresholds[kind] == (min(passing) if passing else float("inf"))


def test_asking_for_more_precision_or_expecting_fewer_errors_raises_every_threshold():
    """Each kind: 100 findings scoring 0.01, 0.02, ..., 1.00 and planted errors that all score
    1.0, so the rule flags from the lowest score k/100 at which the 101 - k findings scoring as
    much are at most the expected errors (assumed_error_rate x 1,000 labels / 4 kinds) divided by
    flag_precision. Fails if the rule ignores the precision asked for (cvtriage.audit.thresholds,
    flag_thresholds: `config.flag_precision * real_at_least` -> `0.5 * real_at_least`)."""
    findings = [Finding(kind, k / 100, f"s{k}", "i") for kind in KINDS for k in range(1, 101)]
    planted = {kind: [1.0] * 50 for kind in KINDS}

    def thresholds(**settings) -> set[float]:
        by_kind = flag_thresholds(findings, planted, 1000, AuditConfig(**settings))
        assert set(by_kind) == set(KINDS)
        return set(by_kind.values())

    assert thresholds(flag_precision=0.5, assumed_error_rate=0.05) == {0.76}  # 12.5 / 0.5 = 25 findings: k >= 76
    assert thresholds(flag_precision=0.9, assumed_error_rate=0.05) == {0.88}  # 12.5 / 0.9 = 13.9: k >= 88
    assert thresholds(flag_precision=0.5, assumed_error_rate=0.01) == {0.96}  # 2.5 / 0.5 = 5: k >= 96
    assert thresholds(flag_precision=0.5, assumed_error_rate=0.001) == {float("inf")}  # under one error: none


def test_thresholds_from_planted_errors_flag_the_real_errors(corrupted_dataset):  # noqa: F811
    dataset, expected = corrupted_dataset
    images = read_image_labels(dataset)
    config = AuditConfig()
    findings = rank_findings(images, config)
    thresholds, floors = choose_thresholds(images, findings, config, dataset.default_classes)
    flagged, _ = flag_findings(findings, thresholds, config, {})
    assert {(kind, expected[kind][0]) for kind in KINDS} <= {(f.kind, f.sample_id) for f in flagged}
    assert len(flagged) <= 8  # the four errors and at most a few of the model's doubts
    # A threshold set by hand is the same for every kind.
    # Findings are searched for shared causes from the median planted error's score, or the threshold if lower.
    assert all(floors[kind] <= thresholds[kind] for kind in KINDS) and min(floors.values()) < max(thresholds.values())
    # A threshold set by hand is the same for every kind.
    by_hand = choose_thresholds(images, findings, AuditConfig(min_score=0.3), dataset.default_classes)
    assert by_hand == ({kind: 0.3 for kind in KINDS}, {kind: 0.3 for kind in KINDS})




def test_border_touching_missing_findings_are_one_group_and_can_be_switched_off():
    import fiftyone as fo

    from cvtriage.audit.predictions import PREDICTIONS
    from cvtriage.labels.fiftyone_loading import GROUND_TRUTH

    # 30 images, labels away from the frame, every one seen by the model; in 12 of them the model
    # also sees a car cut off by the frame that nobody labelled (a labelling policy), and in 3 an
    # unlabelled car in the open (slips).
    car, middle = [0.3, 0.3, 0.45, 0.4], [0.6, 0.6, 0.75, 0.7]
    at_edge = [0.0, 0.5, 0.1, 0.6]
    images = []
    for i in range(30):
        predictions = [("car", car, 0.9)] + ([("car", at_edge, 0.8)] if i < 12 else []) + ([("car", middle, 0.85)] if 12 <= i < 15 else [])
        images.append(image_labels(i, [("car", car)], predictions))
    sizes = {image.sample_id: (640, 480) for image in images}
    config = AuditConfig(min_score=0.5)
    findings = rank_findings(images, config)
    thresholds = {kind: 0.5 for kind in KINDS}
    flagged, ignored = flag_findings(findings, thresholds, config, sizes)
    groups = group_findings(flagged, thresholds, images, sizes)
    assert ignored == 0 and [(g.kind, g.cause, g.count, g.of_kind) for g in groups] == [("missing", "border", 12, 15)]
    assert groups[0].view == "audit-missing-border" and groups[0].label_share == 0

    # The group's saved view holds the 12 images, best first; a second audit without it drops the view.
    dataset = fo.Dataset(f"test-groups-{uuid.uuid4().hex[:8]}")
    dataset.add_samples([fo.Sample(filepath=image.image_path, **{
        GROUND_TRUTH: fo.Detections(detections=[fo.Detection(label="car", bounding_box=[0.3, 0.3, 0.15, 0.1])]),
        PREDICTIONS: fo.Detections(detections=[fo.Detection(label=c, bounding_box=[b[0], b[1], b[2] - b[0], b[3] - b[1]], confidence=p)
                                                for c, b, p in [("car", car, 0.9)] + ([("car", at_edge, 0.8)] if i < 12 else [])
                                                + ([("car", middle, 0.85)] if 12 <= i < 15 else [])])})
        for i, image in enumerate(images)])  # fmt: skip
    images = read_image_labels(dataset)
    findings = rank_findings(images, config)
    sizes = {image.sample_id: (640, 480) for image in images}
    flagged, _ = flag_findings(findings, thresholds, config, sizes)
    groups = group_findings(flagged, thresholds, images, sizes)
    store_findings(dataset, findings, flagged, groups)
    assert len(dataset.load_saved_view("audit-missing-border")) == 12

    # --ignore-border: the cut-off cars are not flagged (and counted); the slips still are.
    flagged, ignored = flag_findings(findings, thresholds, config.model_copy(update={"ignore_border": True}), sizes)
    assert ignored == 12 and len([f for f in flagged if f.kind == "missing"]) == 3
    assert group_findings(flagged, thresholds, images, sizes) == []
    store_findings(dataset, findings, flagged, [])
    assert "audit-missing-border" not in dataset.list_saved_views() and kind_view_name("missing") in dataset.list_saved_views()
    dataset.delete()


def _coco_folder(tmp_path, listed_absent: bool):
    """SAHI's test data in miniature: a COCO file whose people are 'human', three images listed,
    the first of them (optionally) not in the images folder."""
    import cv2

    images = tmp_path / "images"
    images.mkdir()
    entries, annotations = [], []
    for index, name in enumerate(["terrain3.png", "terrain2.png", "terrain1.jpg"], start=1):
        entries.append({"id": index, "file_name": name, "width": 64, "height": 48})
        annotations.append({"id": index, "image_id": index, "category_id": 1 + index % 2, "bbox": [10, 8, 20, 16],
                            "area": 320, "iscrowd": 0})
        if index > 1 or not listed_absent:
            cv2.imwrite(str(images / name), np.full((48, 64, 3), 120, np.uint8))
    coco = tmp_path / "terrain_all_coco.json"
    coco.write_text(json.dumps({"images": entries, "annotations": annotations,
                                "categories": [{"id": 1, "name": "human"}, {"id": 2, "name": "car"}]}))
    return coco, images


def test_cli_class_map_audits_human_labels_with_a_person_model(tmp_path, random_init_weights):  # noqa: F811
    import fiftyone as fo

    coco, _ = _coco_folder(tmp_path, listed_absent=False)
    name = f"test-map-{uuid.uuid4().hex[:8]}"
    args = ["audit-labels", str(coco), "--weights", str(random_init_weights), "--dataset", name, "--imgsz", "64",
            "--out", str(tmp_path / "report")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the model has no class 'human'" in result.output and "--map LABEL_CLASS=MODEL_CLASS" in result.output

    result = CliRunner().invoke(app, [*args, "--map", "human=person"])
    assert result.exit_code == 0, result.output
    dataset = fo.load_dataset(name)
    assert len(dataset) == 3 and dataset.default_classes == ["human", "car"]
    # Predictions are stored under the label's name, so FiftyOne compares them as one class.
    assert set(dataset.distinct("predictions.detections.label")) <= {"human", "car"}

    result = CliRunner().invoke(app, [*args, "--map", "humans=person"])
    assert result.exit_code == 2 and "class_map: the dataset has no class 'humans' (it has: human, car)" in result.output
    result = CliRunner().invoke(app, [*args, "--map", "human"])
    assert result.exit_code == 2 and "expected LABEL_CLASS=MODEL_CLASS" in result.output
    dataset.delete()


def test_cli_coco_file_with_an_absent_image_audits_the_rest_and_names_it(tmp_path, random_init_weights):  # noqa: F811
    import fiftyone as fo

    coco, images = _coco_folder(tmp_path, listed_absent=True)
    name = f"test-absent-{uuid.uuid4().hex[:8]}"
    args = ["audit-labels", str(coco), "--weights", str(random_init_weights), "--dataset", name, "--imgsz", "64",
            "--out", str(tmp_path / "report"), "--map", "human=person"]
    result = CliRunner().invoke(app, [*args, "--ignore-border"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "report" / "audit.json").read_text())["settings"]
    assert settings["ignore_border"] is True and settings["class_map"] == {"human": "person"}
    assert f"{coco}: lists terrain3.png, which is not in {images} (left out)" in result.output
    assert "1 image(s) left out, 2 audited" in result.output
    assert sorted(p.rsplit("/", 1)[1] for p in fo.load_dataset(name).values("filepath")) == ["terrain1.jpg", "terrain2.png"]
    fo.load_dataset(name).delete()

    result = CliRunner().invoke(app, [*args, "--strict"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("cvtriage: error:")]
    assert errors == [f"cvtriage: error: {coco}: lists terrain3.png, which is not in {images}; --strict stops here "
                      "(without it, the other images are audited)"]


def test_findings_of_one_folder_or_class_or_small_boxes_are_grouped_only_when_over_represented():
    # 40 images in four folders, one car and one person label each, all of a good size; the
    # labeller of folder d swaps classes: 8 class findings there, 2 in folder a.
    car, person = [0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.7, 0.7]
    images = [image_labels(i, [("car", car), ("person", person)], [], folder="abcd"[i // 10]) for i in range(40)]
    sizes = {image.sample_id: (640, 640) for image in images}
    swapped = [Finding("class", 0.8, f"s{i}", f"/{'abcd'[i // 10]}/{i}.jpg", label_id=f"l{i}-0",
                       label_class="car", label_box=car) for i in (0, 1, *range(30, 38))]
    floors = {kind: 0.5 for kind in KINDS}
    groups = {(g.cause, g.count, g.of_kind): g for g in group_findings(swapped, floors, images, sizes)}
    # Folder d holds 8 of the 10 (a quarter of the labels are there) and all 10 are cars (half of
    # the labels are): both at least twice as common among the findings. None is small or at the border.
    assert set(groups) == {("folder /d", 8, 10), ("class car", 10, 10)}
    assert groups[("folder /d", 8, 10)].view == "audit-class-folder-d"
    assert groups[("class car", 10, 10)].view == "audit-class-class-car"
    # Spread over two folders (half the labels each), 8 of 10 in one is not twice as common: no group.
    two_folders = [image_labels(i, [("car", car), ("person", person)], [], folder="ab"[i // 20]) for i in range(40)]
    spread = [Finding("class", 0.8, f"s{i}", f"/{'ab'[i // 20]}/{i}.jpg", label_id=f"l{i}-0", label_class="car",
                      label_box=car) for i in (0, 1, *range(20, 28))]
    assert [g.cause for g in group_findings(spread, floors, two_folders, sizes)] == ["class car"]
    # Tiny boxes: a cause of their own once they are many (at 640 px, 0.04 x 0.04 is 26 px a side).
    tiny = [Finding("spurious", 0.7, f"s{i}", f"/a/{i}.jpg", label_id=f"t{i}", label_class="person",
                    label_box=[0.4, 0.4, 0.44, 0.44]) for i in range(6)]
    assert [g.view for g in group_findings(tiny, floors, images, sizes) if g.cause == "small"] == ["audit-spurious-small"]
