"""Detections: tile grids, SAHI-style merging across tiles, and batched tiled inference."""

from types import SimpleNamespace

import numpy as np
import pytest

from cvtriage.config import load_scan_config
from cvtriage.detect import Detector, merge_across_tiles, tile_grid, tile_windows, whole_frame_input
from square_video import Square, SquareDetector, render


def test_auto_tiling_only_for_frames_much_larger_than_the_model_input():
    assert tile_grid(640, 360, 640, "auto", 0.15) == (1, 1)
    assert tile_grid(960, 540, 640, "auto", 0.15) == (1, 1)  # long side <= 1.5 x imgsz
    assert tile_grid(1260, 708, 640, "auto", 0.15) == (1, 2)
    assert tile_grid(3840, 2160, 640, "auto", 0.15) == (3, 5)
    assert tile_grid(3840, 2160, 640, "off", 0.15) == (1, 1)
    assert tile_grid(3840, 2160, 640, "2x3", 0.15) == (2, 3)


def test_auto_gives_a_pytorch_model_the_whole_frame_at_a_larger_input_and_tiles_to_a_fixed_size_model():
    assert whole_frame_input(640, 360, 640) == 640  # small enough as it is
    assert whole_frame_input(1280, 720, 640) == 864  # 1280 / 1.5, up to a multiple of 32
    assert whole_frame_input(1920, 1080, 640) == 1280
    assert whole_frame_input(3840, 2160, 640) is None  # above 2 x imgsz: tiles
    from ultralytics import YOLO

    settings = load_scan_config(imgsz=640, tile="auto")
    pytorch = Detector(YOLO("yolo11n.yaml"), settings, None, "cpu", 1280, 720)
    assert (pytorch.grid, pytorch.input_size, pytorch.images_per_frame) == ((1, 1), 864, 1)
    fixed = Detector(SquareDetector(), settings, None, "cpu", 1280, 720)  # stands in for an exported model
    assert (fixed.grid, fixed.input_size) == ((1, 2), 640)
    # An exported model that says its size (Ultralytics' predictor reads the export's metadata):
    # every input is padded to it anyway, so an 864-px export takes the frame whole.
    exported_864 = SquareDetector()
    exported_864.predictor = SimpleNamespace(model=SimpleNamespace(imgsz=[864, 864], dynamic=False))
    exported = Detector(exported_864, settings, None, "cpu", 1280, 720)
    assert (exported.grid, exported.input_size) == ((1, 1), 864)
    settings.tile = "off"
    assert Detector(YOLO("yolo11n.yaml"), settings, None, "cpu", 1280, 720).input_size == 640


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
    merged_boxes, merged_scores, merged_classes = merge_across_tiles(boxes, scores, classes, sources)
    assert merged_boxes.tolist() == [[90, 10, 150, 30], [100, 12, 150, 30], [10, 60, 30, 80], [12, 62, 32, 82]]
    assert merged_scores.tolist() == pytest.approx([0.9, 0.7, 0.6, 0.5])
    assert merged_classes.tolist() == [0, 1, 0, 0]
    # Class-agnostic: the other-class box on the same object is absorbed too; the best class stays.
    merged_boxes, merged_scores, merged_classes = merge_across_tiles(boxes, scores, classes, sources, agnostic=True)
    assert merged_boxes.tolist() == [[90, 10, 150, 30], [10, 60, 30, 80], [12, 62, 32, 82]]
    assert merged_classes.tolist() == [0, 0, 0]


def test_tiled_batch_finds_small_objects_once_each_in_one_model_call():
    settings = load_scan_config(imgsz=64, tile="auto", tile_overlap=0.2, conf=0.3, tile_full_frame=True)
    squares = [
        Square(0, 0, 9, 165, 40, side=12),  # cut by the right edge of the second tile column (x=170)
        Square(1, 0, 9, 20, 20, side=10),
        Square(0, 0, 9, 250, 150, side=10),
    ]
    frames = [(index, index / 30, render(squares, index, 320, 192)) for index in range(3)]
    model = SquareDetector()
    detector = Detector(model, settings, None, "cpu", 320, 192)
    assert detector.grid == (3, 4)
    assert detector.windows[0] == (0, 0, 320, 192) and detector.images_per_frame == 13  # whole frame + tiles
    assert [w[:3:2] for w in detector.windows[1:5]] == [(0, 95), (75, 170), (150, 245), (225, 320)]
    found = detector.detect(frames)
    assert model.calls == [3 * detector.images_per_frame]  # all tiles of all frames, one call
    for frame in found:
        boxes = sorted(map(tuple, frame.boxes_xyxy.astype(int).tolist()))
        assert boxes == [(20, 20, 30, 30), (165, 40, 177, 52), (250, 150, 260, 160)]
        assert frame.boxes_xyxy.dtype == np.float32 and frame.class_ids.dtype == np.int64
    settings.tile_full_frame = False
    assert Detector(model, settings, None, "cpu", 320, 192).images_per_frame == 12


def test_classes_filter_reaches_the_model():
    settings = load_scan_config(imgsz=320, tile="off")
    image = render([Square(0, 0, 0, 10, 10), Square(1, 0, 0, 100, 100)], 0, 320, 192)
    [frame] = Detector(SquareDetector(), settings, [1], "cpu", 320, 192).detect([(0, 0.0, image)])
    assert frame.class_ids.tolist() == [1]
