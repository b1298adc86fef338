"""Detections: tile grids, SAHI-style merging across tiles, and batched tiled inference."""

from pathlib import Path

import numpy as np
import pytest
from square_video import Square, SquareDetector, render

from cvtriage.boxes import ios_matrix, iou_matrix
from cvtriage.config import load_scan_config
from cvtriage.scan.backends import OpenVinoBackend, UltralyticsBackend
from cvtriage.scan.crops import (
    CROP_CONTEXT,
    CROP_MARGIN,
    STRIDE,
    Letterbox,
    crop_around,
)
from cvtriage.scan.detector import Detector, detection_thresholds
from cvtriage.scan.tiling import (
    merge_across_tiles,
    tile_grid,
    tile_windows,
    whole_frame_input,
)


def test_auto_tiling_only_for_frames_much_larger_than_the_model_input():
    assert tile_grid(640, 360, 640, "auto", 0.15) == (1, 1)
    assert tile_grid(960, 540, 640, "auto", 0.15) == (1, 1)  # long side <= 1.5 x imgsz
    assert tile_grid(1260, 708, 640, "auto", 0.15) == (1, 2)
    assert tile_grid(3840, 2160, 640, "auto", 0.15) == (3, 5)
    assert tile_grid(3840, 2160, 640, "off", 0.15) == (1, 1)
    assert tile_grid(3840, 2160, 640, "2x3", 0.15) == (2, 3)


@pytest.fixture(scope="module")
def static_onnx(tmp_path_factory) -> Path:
    """A real fixed-size export: a random-init yolo11n as ONNX at 128 px, without dynamic shapes."""
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("static-export")
    model = YOLO("yolo11n.yaml")
    model.save(str(folder / "tiny.pt"))
    return Path(YOLO(str(folder / "tiny.pt")).export(format="onnx", imgsz=128, dynamic=False, simplify=False, verbose=False))


def test_auto_gives_a_pytorch_model_the_whole_frame_at_a_larger_input_and_tiles_to_a_fixed_size_model(static_onnx):
    """Fails if the export's own input size is not read (cvtriage.scan.backends.ultralytics,
    exported_input_size: `imgsz = getattr(backend, "imgsz", None)` -> `imgsz = None`): the
    128-px export then gets two 96-px tiles of the frame, each padded to 128 px anyway."""
    from ultralytics import YOLO

    from cvtriage.scan.export import model_to_run

    assert whole_frame_input(640, 360, 640) == 640  # small enough as it is
    assert whole_frame_input(1280, 720, 640) == 864  # 1280 / 1.5, up to a multiple of 32
    assert whole_frame_input(1920, 1080, 640) == 1280
    assert whole_frame_input(3840, 2160, 640) is None  # above 2 x imgsz: tiles
    settings = load_scan_config(imgsz=640, tile="auto")
    pytorch = Detector.for_model(YOLO("yolo11n.yaml"), settings, None, "cpu", 1280, 720)
    assert (pytorch.grid, pytorch.input_size, pytorch.images_per_frame) == ((1, 1), 864, 1)
    fixed = Detector.for_model(SquareDetector(), settings, None, "cpu", 1280, 720)  # stands in for an exported model
    assert (fixed.grid, fixed.input_size) == ((1, 2), 640)
    # An exported model that says its size (Ultralytics' predictor reads the export's metadata):
    # every input is padded to it anyway, so a 128-px export takes a 192x108 frame whole, where
    # 96 px (the imgsz asked for) would need two tiles.
    small = load_scan_config(imgsz=96, tile="auto")
    exported, _ = model_to_run(small, "cpu", YOLO(str(static_onnx), task="detect"))
    fixed_128 = Detector.for_model(exported, small, None, "cpu", 192, 108)
    assert (fixed_128.grid, fixed_128.input_size, fixed_128.fixed_input) == ((1, 1), 128, True)
    assert Detector.for_model(SquareDetector(), small, None, "cpu", 192, 108).grid == (1, 2)
    [found] = fixed_128.detect([(0, 0.0, np.zeros((108, 192, 3), np.uint8))])  # runs at its size
    assert found.boxes_xyxy.shape[1] == 4
    settings.tile = "off"
    assert Detector.for_model(YOLO("yolo11n.yaml"), settings, None, "cpu", 1280, 720).input_size == 640


def test_tile_windows_are_equal_overlapping_and_cover_the_frame():
    windows = tile_windows(1000, 500, 2, 3, 0.2)
    assert len(windows) == 6
    assert {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows} == {(385, 278)}
    covered = np.zeros((500, 1000), bool)
    for x0, y0, x1, y1 in windows:
        covered[y0:y1, x0:x1] = True
        assert 0 <= x0 < x1 <= 1000 and 0 <= y0 < y1 <= 500
    assert covered.all()
    # neighbours share at least the requested overlap
    assert windows[0][2] - windows[1][0] >= 0.2 * 385 - 1


def test_intersection_over_the_smaller_box_sees_a_piece_inside_a_whole():
    whole, piece, apart, empty = [0, 0, 100, 100], [10, 10, 20, 20], [200, 0, 210, 10], [50, 50, 50, 60]
    assert ios_matrix([piece], [whole]).tolist() == [[1.0]] and iou_matrix([piece], [whole])[0, 0] == pytest.approx(0.01)
    assert ios_matrix([whole, piece], [apart, empty, [0, 0, 50, 10]]).tolist() == [[0, 0, 1], [0, 0, 0]]


def test_merge_joins_an_object_cut_at_a_seam_but_not_different_objects():
    boxes = np.array(
        [
            [90, 10, 130, 30],  # left tile: the object's left part (cut at the seam x=130)
            [100, 12, 150, 30],  # right tile: the same object's right part
            [100, 12, 150, 30],  # right tile, other class
            [10, 60, 30, 80],  # left tile: a separate object
            [12, 62, 32, 82],  # the same tile again (the model's own NMS kept both): not merged
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    classes = np.array([0, 0, 1, 0, 0])
    sources = np.array([0, 1, 1, 0, 0])
    merged_boxes, merged_scores, merged_classes, best = merge_across_tiles(boxes, scores, classes, sources)
    assert merged_boxes.tolist() == [[90, 10, 150, 30], [100, 12, 150, 30], [10, 60, 30, 80], [12, 62, 32, 82]]
    assert best.tolist() == [0, 2, 3, 4]  # whose features each merged box keeps
    assert merged_scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert merged_classes.tolist() == [0, 1, 0, 0]
    # Class-agnostic: the other-class box on the same object is absorbed too; the best class stays.
    merged_boxes, merged_scores, merged_classes, best = merge_across_tiles(boxes, scores, classes, sources, agnostic=True)
    assert merged_boxes.tolist() == [[90, 10, 150, 30], [10, 60, 30, 80], [12, 62, 32, 82]]
    assert merged_classes.tolist() == [0, 0, 0] and best.tolist() == [0, 3, 4]


def test_tiled_batch_finds_small_objects_once_each():
    settings = load_scan_config(imgsz=64, tile="auto", tile_overlap=0.2, conf=0.3, tile_full_frame=True)
    squares = [
        Square(0, 0, 9, 165, 40, side=12),  # cut by the right edge of the second tile column (x=170)
        Square(1, 0, 9, 20, 20, side=10),
        Square(0, 0, 9, 250, 150, side=10),
    ]
    frames = [(index, index / 30, render(squares, index, 320, 192)) for index in range(3)]
    model = SquareDetector()
    detector = Detector.for_model(model, settings, None, "cpu", 320, 192)
    assert detector.grid == (3, 4)
    assert detector.windows[0] == (0, 0, 320, 192) and detector.images_per_frame == 13  # whole frame + tiles
    assert [w[:3:2] for w in detector.windows[1:5]] == [(0, 95), (75, 170), (150, 245), (225, 320)]
    found = detector.detect(frames)
    assert model.calls == [1] * 3 * detector.images_per_frame  # on the CPU, one tile per call
    gpu_model = SquareDetector()
    on_gpu = Detector.for_model(gpu_model, settings, None, "0", 320, 192).detect(frames)
    assert on_gpu[0].boxes_xyxy.tolist() == found[0].boxes_xyxy.tolist()
    assert gpu_model.calls == [3 * detector.images_per_frame]  # on a GPU, all tiles of all frames in one call
    for frame in found:
        boxes = sorted(map(tuple, frame.boxes_xyxy.astype(int).tolist()))
        assert boxes == [(20, 20, 30, 30), (165, 40, 177, 52), (250, 150, 260, 160)]
        assert frame.boxes_xyxy.dtype == np.float32 and frame.class_ids.dtype == np.int64
    settings.tile_full_frame = False
    assert Detector.for_model(model, settings, None, "cpu", 320, 192).images_per_frame == 12


def test_classes_filter_reaches_the_model():
    settings = load_scan_config(imgsz=320, tile="off")
    image = render([Square(0, 0, 0, 10, 10), Square(1, 0, 0, 100, 100)], 0, 320, 192)
    [frame] = Detector.for_model(SquareDetector(), settings, [1], "cpu", 320, 192).detect([(0, 0.0, image)])
    assert frame.class_ids.tolist() == [1]


def test_openvino_export_runs_its_tiles_side_by_side_with_the_boxes_predict_gives(shared_data):
    import cv2

    from cvtriage.models import load_model

    pytest.importorskip("openvino")
    model = load_model(shared_data / "weights" / "yolov8n-coco-int8_openvino_model")
    image = cv2.imread(str(shared_data / "images" / "aerial_small_vehicles.jpeg"))
    height, width = image.shape[:2]
    settings = load_scan_config(tile="2x3", tile_overlap=0.2, tile_full_frame=True, conf=0.3, iou=0.7)
    detector = Detector.for_model(model, settings, None, "cpu", width, height)
    assert isinstance(detector.backend, OpenVinoBackend) and detector.input_size == 640  # read from the export itself
    [direct] = detector.detect([(0, 0.0, image)])
    # The same tiles through Ultralytics' predict.
    predict = UltralyticsBackend(model, "cpu", detection_thresholds(settings, None), batches=False)
    [reference] = Detector(predict, settings, width, height).detect([(0, 0.0, image)])
    assert len(direct) == len(reference) > 10
    order, reference_order = np.lexsort(direct.boxes_xyxy.T), np.lexsort(reference.boxes_xyxy.T)
    assert direct.boxes_xyxy[order] == pytest.approx(reference.boxes_xyxy[reference_order], abs=0.01)
    assert direct.scores[order] == pytest.approx(reference.scores[reference_order], abs=1e-4)
    assert direct.class_ids[order].tolist() == reference.class_ids[reference_order].tolist()
    # Not an OpenVINO export, or not on the CPU: Ultralytics' predict.
    assert isinstance(Detector.for_model(SquareDetector(), settings, None, "cpu", width, height).backend, UltralyticsBackend)
    assert OpenVinoBackend.for_model(model, "0", detection_thresholds(settings, None)) is None


def test_refinement_crop_is_a_piece_of_the_whole_frame_input_on_the_stride_grid():
    letterbox = Letterbox.of_frame(1280, 720, 864)  # as Ultralytics letterboxes it: 864x486, padded to 512
    assert (letterbox.ratio, letterbox.left, letterbox.top, letterbox.width, letterbox.height) == (0.675, 0, 13, 864, 512)
    crop = crop_around(np.array([[600, 300, 640, 340]]), letterbox)
    x0, y0, x1, y1 = crop.window
    assert all(v % STRIDE == 0 for v in crop.window) and x1 - x0 == y1 - y0 == crop.imgsz == 320
    # In input pixels the box is 405-432 x 215.5-242.5: margin and context on every side.
    reach = CROP_MARGIN + CROP_CONTEXT
    assert x0 <= 405 - reach and y0 <= 215.5 - reach and x1 >= 432 + reach and y1 >= 242.5 + reach
    # The region it answers for: the box grown by CROP_MARGIN input pixels, in frame pixels.
    grow = CROP_MARGIN / 0.675
    assert crop.region == (int(600 - grow), int(300 - grow), int(np.ceil(640 + grow)), int(np.ceil(340 + grow)))
    # At the frame's corners the window stops at the input's edge and the region at the frame's.
    corner = crop_around(np.array([[0, 0, 30, 30]]), letterbox)
    assert corner.window == (0, 0, 256, 256) and corner.region[:2] == (0, 0)  # a square of CROP_SIDES
    far = crop_around(np.array([[1250, 690, 1280, 720]]), letterbox)
    assert far.window[2:] == (864, 512) and far.region[2:] == (1280, 720)
    # Objects far apart would make a crop of most of the frame: the whole frame is inferred.
    assert crop_around(np.array([[100, 100, 140, 140], [1100, 600, 1140, 640]]), letterbox) is None
    assert crop_around(np.zeros((0, 4)), letterbox) is None
    settings = load_scan_config(imgsz=640, tile="auto")
    assert Detector.for_model(SquareDetector(), settings, None, "cpu", 1280, 720).crop_for(np.array([[600, 300, 640, 340]])) is None


def test_the_scans_dynamic_openvino_export_gives_predicts_boxes_at_any_input_size(tmp_path, monkeypatch):
    import shutil

    pytest.importorskip("openvino")
    from cvtriage.paths import DEMO_WEIGHTS
    from cvtriage.scan import export

    monkeypatch.delenv(export.NO_EXPORT_ENV, raising=False)
    weights = tmp_path / "demo.pt"
    shutil.copyfile(DEMO_WEIGHTS, weights)
    model = export.load_export(str(export.cached_export(weights)), "cpu")
    # A piece of a synthetic scene, where the model finds objects at low conf (in random noise the
    # demo model finds nothing, as a model should).
    import cv2

    from cvtriage.synth.dataset import generate_dataset

    generate_dataset(tmp_path / "scene", images=2, imgsz=512, seed=3, workers=1)
    image = np.ascontiguousarray(cv2.imread(str(sorted((tmp_path / "scene").glob("images/*/*.jpg"))[0]))[:300, :500])
    for tile, imgsz in (("2x2", 160), ("off", 320)):
        settings = load_scan_config(tile=tile, imgsz=imgsz, conf=0.02, tile_full_frame=True)
        detector = Detector.for_model(model, settings, None, "cpu", 500, 300)
        assert isinstance(detector.backend, OpenVinoBackend) and detector.backend.any_size
        [direct] = detector.detect([(0, 0.0, image)])
        predict = UltralyticsBackend(model, "cpu", detection_thresholds(settings, None), batches=False)
        [reference] = Detector(predict, settings, 500, 300).detect([(0, 0.0, image)])
        assert len(direct) == len(reference) > 0
        order, reference_order = np.lexsort(direct.boxes_xyxy.T), np.lexsort(reference.boxes_xyxy.T)
        assert direct.boxes_xyxy[order] == pytest.approx(reference.boxes_xyxy[reference_order], abs=0.01)
        assert direct.scores[order] == pytest.approx(reference.scores[reference_order], abs=1e-4)
