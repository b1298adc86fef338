"""Memory flat over long flights: glibc's malloc told to map large blocks on their own."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

# Blocks this large get a mapping of their own from glibc's malloc (see map_large_blocks).
LARGE_BLOCK_BYTES = 1 << 20
# glibc's own thresholds once a process has freed a 32 MB block (its dynamic mmap threshold's
# ceiling on 64-bit, and twice that to trim): what a scan leaves behind (see large_blocks_mapped).
SETTLED_MMAP_THRESHOLD = 32 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (glibc's malloc.h)


def map_large_blocks() -> bool:
    """Make glibc's malloc give every block of LARGE_BLOCK_BYTES or more its own mapping, returned
    to the system when freed; True where that was set (glibc), False elsewhere.

    Why: a scan allocates and frees large buffers by the thousand (a 1080p frame is 6 MB, its
    model input 11 MB, PyTorch's activations more), between long-lived small objects. glibc raises
    its mmap threshold to the size of each mapped block freed (up to 32 MB), so after the first
    frame these buffers come from the heap, and their freed space, pinned between small objects,
    stays resident: the scan's RSS held 150-250 MB of freed memory and, run with PyTorch, grew for
    minutes (+18% over a 10-minute 1080p flight). A fixed threshold ends that (README, Figures:
    memory over a long flight). Process-wide, as any malloc setting is. Not for PyTorch on the
    CPU (see backends.ultralytics.runs_pytorch): its activations, tens of MB a frame, would each
    be mapped anew (1.29x the wall time, 4x the system time, measured)."""
    return _glibc_mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK_BYTES)


@contextmanager
def large_blocks_mapped(wanted: bool) -> Iterator[None]:
    """map_large_blocks (when `wanted`) while the block runs; then glibc's settled thresholds, so
    work after a scan in the same process is not charged for it (PyTorch training then spent 4x
    the system time: every activation mapped anew)."""
    mapped = wanted and map_large_blocks()
    try:
        yield
    finally:
        if mapped:
            _glibc_mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP_THRESHOLD)
            _glibc_mallopt(M_TRIM_THRESHOLD, 2 * SETTLED_MMAP_THRESHOLD)


def _glibc_mallopt(parameter: int, value: int) -> bool:
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False  # other allocators (musl, macOS, Windows) have other settings
        return bool(ctypes.CDLL(None).mallopt(parameter, value))
    except (ValueError, OSError, AttributeError):  # no such confstr name, no mallopt
        return False
