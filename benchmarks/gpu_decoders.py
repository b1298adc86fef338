"""Decoders of one video, timed and checked (a part of benchmarks/gpu_check.py).

- PyAV, FFmpeg's frame and slice threads on the CPU (`thread_type` AUTO): what cvtriage decodes
  with, to BGR images in host memory;
- NVDEC through the same PyAV wheel's FFmpeg (`av.open(..., hwaccel=HWAccel("cuda"))`), to BGR
  images in host memory;
- torchcodec's CUDA decoder, to RGB tensors on the GPU;
- PyNvVideoCodec's SimpleDecoder, to RGB frames on the GPU.

Each one that imports and opens the video decodes every frame in order (timed), then is checked
as tests/test_frames.py checks cvtriage's own reader: its frames are the container's, as many and
in presentation order (their timestamps, where it gives them, are the container's packets'), and
a seek to a frame returns that very frame, the one sequential decoding gave (mean difference
under one grey level: the same decoder on both sides).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cvtriage.scan.frames import FrameSource, probe_source

SEEKS = 5  # frames read after a seek, at random places


@dataclass
class Decoded:
    name: str
    fps: float | None = None
    frames_right: bool | None = None  # count (and timestamps, where given) are the container's
    seeks_right: bool | None = None
    note: str = ""

    def line(self) -> str:
        if self.fps is None:
            return f"{self.name}: not measured ({self.note})"
        checks = f"frames {'right' if self.frames_right else 'WRONG'}, seeks {'exact' if self.seeks_right else 'WRONG'}"
        return f"{self.name}: {self.fps:.0f} frames/s; {checks}{f' ({self.note})' if self.note else ''}"


def _close(a, b) -> bool:
    a, b = (np.asarray(x.cpu() if hasattr(x, "cpu") else x, np.float32) for x in (a, b))
    return a.shape == b.shape and float(np.abs(a - b).mean()) < 1.0


def _measure(name: str, sequential: Callable[[], Iterator], seek: Callable[[int], object], pts: np.ndarray) -> Decoded:
    """`sequential()` yields (timestamp or None, image) for every frame; `seek(i)` reads frame i alone."""
    probes = sorted(random.Random(0).sample(range(len(pts)), min(SEEKS, len(pts))))
    kept, stamps, count = {}, [], 0
    started = time.perf_counter()
    for count, (stamp, image) in enumerate(sequential(), start=1):
        stamps.append(stamp)
        if count - 1 in probes:
            kept[count - 1] = image
    elapsed = time.perf_counter() - started
    given = [stamp for stamp in stamps if stamp is not None]
    frames_right = count == len(pts) and (not given or np.array_equal(np.asarray(given), pts))
    seeks_right = all(_close(seek(index), kept[index]) for index in probes)
    return Decoded(name, count / max(elapsed, 1e-9), frames_right, seeks_right, "" if given else "no timestamps given")


def _pyav(video: Path, hwaccel, pts: np.ndarray) -> tuple[Callable, Callable]:
    import av

    def opened():
        container = av.open(str(video), hwaccel=hwaccel)
        stream = container.streams.video[0]
        if hwaccel is None:
            stream.thread_type = "AUTO"
        return container, stream

    def sequential():
        container, stream = opened()
        with container:
            for frame in container.decode(stream):
                yield frame.pts, frame.to_ndarray(format="bgr24")

    def seek(index: int):
        # As cvtriage's reader does: to the keyframe before, then decode to the frame's timestamp,
        # starting further back when the seek lands after it.
        back = 0
        while True:
            container, stream = opened()
            with container:
                container.seek(int(pts[max(0, index - back)]), stream=stream, backward=True)
                for frame in container.decode(stream):
                    if frame.pts == pts[index]:
                        return frame.to_ndarray(format="bgr24")
                    if frame.pts > pts[index]:
                        break
            if index - back <= 0:
                return None
            back = max(2 * back, 16)

    return sequential, seek


def _torchcodec(video: Path, time_base) -> tuple[Callable, Callable]:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(video), device="cuda", seek_mode="exact")
    # Its timestamps are seconds: compared as the container's, rounded to the time base.
    to_pts = lambda seconds: int(round(seconds / float(time_base)))  # noqa: E731

    def sequential():
        for start in range(0, len(decoder), 64):
            batch = decoder.get_frames_in_range(start, min(start + 64, len(decoder)))
            for image, seconds in zip(batch.data, batch.pts_seconds.tolist()):
                yield to_pts(seconds), image

    return sequential, lambda index: decoder.get_frame_at(index).data


def _pynvvideocodec(video: Path) -> tuple[Callable, Callable]:
    import PyNvVideoCodec as nvc
    import torch

    decoder = nvc.SimpleDecoder(str(video), gpu_id=0, use_device_memory=True, output_color_type=nvc.OutputColorType.RGB)

    def sequential():
        for start in range(0, len(decoder), 64):
            for frame in decoder[start : min(start + 64, len(decoder))]:
                yield None, torch.from_dlpack(frame).clone()

    return sequential, lambda index: torch.from_dlpack(decoder[index]).clone()


def compare_decoders(video: Path) -> list[Decoded]:
    """Every decoder above that imports and runs here, on `video` (the first is always PyAV's)."""
    info = probe_source(video)
    times = info.frame_times
    pts = times.pts if times is not None else np.arange(info.frame_count)
    results = []
    makers = {
        "PyAV, CPU threads (cvtriage's)": lambda: _pyav(video, None, pts),
        "PyAV, NVDEC": lambda: _pyav(video, _nvdec(), pts),
        "torchcodec, CUDA": lambda: _torchcodec(video, times.time_base),
        "PyNvVideoCodec": lambda: _pynvvideocodec(video),
    }
    for name, make in makers.items():
        try:
            sequential, seek = make()
            results.append(_measure(name, sequential, seek, pts))
        except Exception as error:  # not installed, no such device, a codec it lacks: said, not fatal
            results.append(Decoded(name, note=f"{type(error).__name__}: {str(error).strip().splitlines()[0][:120] if str(error).strip() else ''}"))
    return results


def _nvdec():
    from av.codec.hwaccel import HWAccel

    return HWAccel(device_type="cuda", allow_software_fallback=False)


def cvtriage_decode_fps(video: Path, converters: int) -> float:
    """The dense scan's own decoding (frames.PrefetchedFrames: every frame a BGR image, with
    `converters` conversion threads), frames per second."""
    from cvtriage.scan.frames import PrefetchedFrames

    source = FrameSource(probe_source(video))
    started = time.perf_counter()
    count = sum(1 for _ in PrefetchedFrames(source, lambda index: True, 64, converters))
    return count / max(time.perf_counter() - started, 1e-9)
