"""benchmarks/gpu_check.py, the GPU figures' script: without CUDA it skips at once, and its CPU smoke
run (the same code on tiny inputs) prints every figure line. Its figures are a GPU's to print."""

import gpu_check  # benchmarks/ is on the path (conftest.py)
import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_without_cuda_it_skips_at_once_in_one_line(capsys):
    for part in ("train", "scan"):
        gpu_check.main(["--part", part])
        assert capsys.readouterr().out.splitlines() == [
            "gpu_check: skipped, no CUDA GPU here (torch.cuda.is_available() is False)"
        ]


@pytest.mark.slow
@pytest.mark.parametrize("part", ["train", "scan"])
def test_a_cpu_smoke_run_prints_every_figure_line(part, request, tmp_path, capsys):
    if part == "scan":
        request.getfixturevalue("ray_runtime")  # the session's runtime: its batch on Ray joins it
    gpu_check.main(["--part", part, "--cpu-smoke", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    for name in gpu_check.FIGURES[part]:
        assert [line for line in lines if line.startswith(f"{name}: ")], (name, lines)
    if part == "scan":  # each decoder said what it measured, or why it could not
        assert len([line for line in lines if line.startswith("  ") and ("frames/s" in line or "not measured" in line)]) >= 5
