"""`cvtriage watch` bombarded with all sorts of files while killed with SIGKILL and restarted three
times (tests/watch_stress.py; benchmarks/watch_stress.py runs the same at 5,000 pairs)."""

from watch_stress import run_stress

from cvtriage.config import load_ingest_config, load_scan_config

STRESS_PAIRS = 120


def test_every_pair_once_every_bad_file_quarantined_nothing_lost_across_kills(tmp_path):
    """Three watcher processes die of SIGKILL, each a pid of its own. Fails if the harness sends
    SIGTERM instead (watch_stress.run_stress: `os.kill(child.pid, signal.SIGTERM)`): the watchers
    then stop cleanly, and none is counted as killed."""
    settings = load_ingest_config(
        out=str(tmp_path / "out"), dataset="watch-stress", pair_timeout=1.0, settle_seconds=0.5, poll_seconds=0.05,
        rescan_seconds=2.0, max_sidecar_bytes=2000,
    )
    scan = load_scan_config(weights="square-detector", imgsz=96, tile="off")
    result = run_stress(tmp_path / "in", tmp_path / "out", scan, settings, STRESS_PAIRS, kills=3, model_kind="square",
                        mean_delay_s=0.01)  # fmt: skip
    assert len(set(result.killed)) == 3, result.killed  # three processes, each killed while at work
    assert result.problems == []
    assert result.processed_rows == STRESS_PAIRS
