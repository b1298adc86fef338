"""Tiny YOLO datasets for tests: coloured rectangles on a plain background, labels exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cvtriage.labels.yolo import write_data_yaml

NAMES = ["car", "person", "boat"]
COLOURS = [(40, 40, 220), (40, 200, 40), (220, 120, 30)]


def write_yolo_dataset(
    root: Path, images: dict[str, int] | None = None, size: int = 64, boxes_per_image: int = 4, seed: int = 0
) -> Path:
    """images: split -> count. Boxes do not overlap (one per cell of a 2x2 grid). Returns data.yaml."""
    import cv2

    rng = np.random.default_rng(seed)
    images = images or {"train": 6, "val": 2}
    for split, count in images.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image = np.full((size, size, 3), 128, np.uint8)
            lines = []
            for cell in rng.permutation(4)[:boxes_per_image]:
                class_id = int(rng.integers(len(NAMES)))
                w, h = rng.uniform(0.15, 0.35, 2)
                cx = (cell % 2) * 0.5 + 0.25 + rng.uniform(-0.05, 0.05)
                cy = (cell // 2) * 0.5 + 0.25 + rng.uniform(-0.05, 0.05)
                x1, y1 = int((cx - w / 2) * size), int((cy - h / 2) * size)
                x2, y2 = int((cx + w / 2) * size), int((cy + h / 2) * size)
                cv2.rectangle(image, (x1, y1), (x2, y2), COLOURS[class_id], -1)
                lines.append(f"{class_id} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            name = f"{split}_{index:03d}"
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image)
            (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return write_data_yaml(root, NAMES, {split: f"images/{split}" for split in images})
