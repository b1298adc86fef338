"""Frames: probing, sampling, the prefetching decoder thread and targeted reads."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from cvtriage.errors import CvtriageError
from cvtriage.frames import FrameSource, PrefetchedFrames, probe_source, sample_step
from square_video import Square, render, write_square_video, write_truncated_avi

SQUARES = [Square(0, 0, 59, 10, 10, vx=2.0), Square(1, 20, 45, 200, 80, vy=1.0)]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_square_video(tmp_path_factory.mktemp("frames") / "clip.mp4", SQUARES, frames=60)


def all_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_probe_reads_size_rate_and_length(video):
    info = probe_source(video)
    assert (info.kind, info.width, info.height, info.fps, info.frame_count) == ("video", 320, 192, 30.0, 60)
    assert info.time_of(45) == pytest.approx(1.5)


def test_sample_step_from_every_or_fps(video):
    info = probe_source(video)
    assert sample_step(info, every=7, fps=None) == 7
    assert sample_step(info, every=None, fps=2.0) == 15
    assert sample_step(info, every=None, fps=100.0) == 1  # never below every frame


def test_prefetched_frames_are_the_sampled_frames_in_order(video):
    reference = all_frames(video)
    source = FrameSource(probe_source(video))
    prefetch = PrefetchedFrames(source, lambda index: index % 15 == 0, queue_size=2)
    got = list(prefetch)
    assert [index for index, _ in got] == [0, 15, 30, 45]
    for index, frame in got:
        assert np.array_equal(frame, reference[index])
    assert prefetch.decoded_count == 60


def test_prefetch_stops_its_thread_when_the_consumer_stops(video):
    prefetch = PrefetchedFrames(FrameSource(probe_source(video)), lambda index: True, queue_size=1)
    for index, _ in prefetch:
        if index == 3:
            break
    assert not prefetch._thread.is_alive()


def test_reader_gives_the_same_frames_as_sequential_decode(video):
    reference = all_frames(video)
    reader = FrameSource(probe_source(video)).reader(cache_frames=4)
    # forward a little, back within the cache, back past it (a seek), forward again, past the end
    for index in [5, 9, 7, 2, 40, 41, 59]:
        assert np.array_equal(reader.read(index), reference[index]), index
    assert reader.read(60) is None
    reader.close()


def test_image_folder_is_read_in_name_order_with_bad_images_as_none(tmp_path):
    for number in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"img_{number:02d}.png"), render(SQUARES, number * 10, 96, 64))
    (tmp_path / "img_03.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    info = probe_source(tmp_path)
    assert (info.kind, info.width, info.height, info.fps, info.frame_count) == ("images", 96, 64, 1.0, 4)
    source = FrameSource(info)
    frames = list(source.frames(lambda index: True))
    assert [index for index, _ in frames] == [0, 1, 2, 3]
    assert np.array_equal(frames[2][1], render(SQUARES, 20, 96, 64))
    assert frames[3][1] is None
    assert np.array_equal(source.reader().read(1), render(SQUARES, 10, 96, 64))


def test_bad_sources_raise_one_clear_error(tmp_path):
    with pytest.raises(CvtriageError, match="file not found"):
        probe_source(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(CvtriageError, match="not a video"):
        probe_source(text)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CvtriageError, match="no images"):
        probe_source(tmp_path / "empty")


def test_truncated_video_decodes_its_start_and_reports_the_rest(tmp_path):
    path = write_truncated_avi(tmp_path / "cut.avi", frames=30)
    info = probe_source(path)
    assert info.frame_count == 30  # the container's claim
    source = FrameSource(info)
    decoded = [index for index, _ in source.frames(lambda index: True)]
    assert 5 < len(decoded) < 30 and decoded == list(range(len(decoded)))
    [bad] = source.bad_ranges(source.decoded_count)
    assert (bad.first, bad.last) == (len(decoded), 29)
