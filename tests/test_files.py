import pytest

from cvtriage.files import replaced_on_success, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    target = tmp_path / "report.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), replaced_on_success(target) as partial:
        partial.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.csv"]


def test_a_completed_write_replaces_the_file_and_keeps_the_suffix_for_format_detection(tmp_path):
    target = tmp_path / "plot.png"
    with replaced_on_success(target) as partial:
        assert partial.suffix == ".png" and partial.parent == tmp_path
        partial.write_bytes(b"new")
    write_text_atomic(tmp_path / "notes.txt", "whole\n")
    assert target.read_bytes() == b"new"
    assert (tmp_path / "notes.txt").read_text() == "whole\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt", "plot.png"]
