"""How busy a CUDA GPU was while something ran: its utilisation sampled on a thread, its peak memory.

torch.cuda.utilization() asks the driver (NVML, through the nvidia-ml-py package where it is
installed) what share of the last sample period a kernel ran on the GPU: the figure `nvidia-smi`
shows. Without CUDA or NVML the figures are None and read "n/a".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Seconds between two utilisation samples: NVML's own sample period is 1/6 to 1 s.
SAMPLE_SECONDS = 0.5


@dataclass
class GpuUsage:
    """A context manager: `with GpuUsage() as usage: ...`, then usage.mean_utilisation (percent),
    usage.peak_memory_bytes (the most this process's tensors held on the GPU: PyTorch's own count;
    the utilisation is the whole GPU's, whichever process used it)."""

    device: int = 0
    samples: list[int] = field(default_factory=list)
    peak_memory_bytes: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> "GpuUsage":
        import torch

        if torch.cuda.is_available() and self._utilisation() is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True, name="cvtriage-gpu-usage")
            self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if torch.cuda.is_available():
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated(self.device))

    def _utilisation(self) -> int | None:
        import torch

        try:
            return int(torch.cuda.utilization(self.device))
        except Exception:  # no NVML (nvidia-ml-py not installed), or a driver that will not say
            return None

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            value = self._utilisation()
            if value is not None:
                self.samples.append(value)

    @property
    def mean_utilisation(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None

    def utilisation_text(self) -> str:
        """"busy 63% (mean of 240 samples 0.5 s apart, peak 98%)", or "n/a"."""
        if self.mean_utilisation is None:
            return "n/a"
        return f"busy {self.mean_utilisation:.0f}% (mean of {len(self.samples)} samples {SAMPLE_SECONDS:g} s apart, peak {max(self.samples)}%)"

    def memory_text(self) -> str:
        return "n/a" if self.peak_memory_bytes is None else f"{self.peak_memory_bytes / 1e9:.2f} GB"
