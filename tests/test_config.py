"""Settings that would fail late, or with a traceback, are refused when loaded, in one line."""

import pytest

from cvtriage.config import load_scan_config
from cvtriage.errors import CvtriageError


@pytest.mark.parametrize("tile", ["0x9", "3x0"])
def test_a_tile_grid_needs_a_row_and_a_column(tile):
    with pytest.raises(CvtriageError, match=f"tile: {tile}: rows and columns must be at least 1"):
        load_scan_config(tile=tile)
    assert load_scan_config(tile="1x1").tile == "1x1"


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "results.txt").write_text("mine")
    with pytest.raises(CvtriageError, match="out: .*results.txt is a file, not a folder"):
        load_scan_config(out=str(tmp_path / "results.txt"))
    assert load_scan_config(out=str(tmp_path / "new")).out == str(tmp_path / "new")
