"""One timing interface for ``probe`` and ``bench``: devices, timers, budgets, lazy torch.

torch and transformers are imported only inside these functions, so ``import llmroofline``
stays light; without them the user gets one line naming the extra to install.

Devices: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (= ``cuda`` when
``torch.cuda.is_available()``, else ``cpu``); :func:`check_device` resolves ``auto`` and
raises a one-line :class:`InputError` when cuda is asked for but PyTorch sees no GPU.

Timers (:func:`timer_for`), one interface with two backends:

- :class:`CpuTimer`: ``time.perf_counter`` around the call (CPU kernels are synchronous).
- :class:`CudaTimer`: a ``torch.cuda.Event`` pair recorded around the call on the current
  stream, then ``end.synchronize()``: each sample is the device time of the work enqueued,
  launch gaps included. ``sync()`` is ``torch.cuda.synchronize``.

:meth:`Clock.measure` = ``warmup`` untimed calls, ``sync()``, then ``repeats`` timed calls;
it returns every sample and the median (seconds). :class:`Budget` is a wall-clock allowance
in seconds that the probe spends step by step.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InputError

INSTALL_HINT = 'pip install "llmroofline[bench]"'
DEVICES_HELP = "cpu, cuda, cuda:N or auto"


def require_torch(transformers: bool = False):
    """Import torch (and optionally transformers) or raise a one-line InputError."""
    try:
        import torch
    except ImportError:
        raise InputError(f"probe/bench need PyTorch, which is not installed: {INSTALL_HINT}") from None
    if transformers:
        try:
            import transformers as _  # noqa: F401
        except ImportError:
            raise InputError("bench needs transformers, which is not installed: "
                             f"{INSTALL_HINT}") from None
    return torch


def parse_device(device: str) -> str:
    """Normalized device string (no torch needed); InputError naming the allowed values."""
    d = str(device).strip().lower()
    if d in ("cpu", "cuda", "auto") or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise InputError(f"device must be one of {DEVICES_HELP}, got {device!r}")


def check_device(device: str) -> str:
    """'cpu' or 'cuda[:N]'; 'auto' becomes cuda when a GPU is visible, else cpu."""
    d = parse_device(device)
    if d == "cpu":
        return d
    torch = require_torch()
    has_gpu = bool(torch.cuda.is_available())
    if d == "auto":
        return "cuda" if has_gpu else "cpu"
    if not has_gpu:
        raise InputError("device: cuda requested but PyTorch sees no GPU "
                         "(torch.cuda.is_available() is False); use --device cpu or auto")
    idx = int(d[5:]) if ":" in d else 0
    if idx >= torch.cuda.device_count():
        raise InputError(f"device: {d} requested but only {torch.cuda.device_count()} GPU(s) "
                         f"are visible (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return d


def check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise InputError(f"threads must be an integer in [1, 1024], got {threads!r}")
    return threads


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with ``torch.set_num_threads(threads)`` and restore the previous value."""
    torch = require_torch()
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(old)


def median(xs) -> float:
    return float(statistics.median(xs))


# -- timers ----------------------------------------------------------------------------------
class CpuTimer:
    """perf_counter around a synchronous call."""

    name = "cpu"

    def sync(self) -> None:
        return None

    def once(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        t = time.perf_counter()
        r = fn()
        return time.perf_counter() - t, r


class CudaTimer:
    """CUDA events around the work a call enqueues (module docstring)."""

    name = "cuda"

    def __init__(self, device: str = "cuda"):
        self.device = device

    def sync(self) -> None:
        import torch
        torch.cuda.synchronize(self.device)

    def once(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        import torch
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        r = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) * 1e-3, r     # elapsed_time is in ms


def timer_for(device: str):
    """The timer backend of a (resolved) device string."""
    return CudaTimer(device) if str(device).startswith("cuda") else CpuTimer()


@dataclass
class Measurement:
    """Samples of one timed callable, in seconds."""

    samples_s: list[float]

    @property
    def median_s(self) -> float:
        return median(self.samples_s)

    @property
    def min_s(self) -> float:
        return min(self.samples_s)


@dataclass
class Clock:
    """Times callables on one device through its timer backend (module docstring)."""

    device: str = "cpu"
    timer: Any = field(default=None, repr=False)

    def __post_init__(self):
        if self.timer is None:
            self.timer = timer_for(self.device)

    @property
    def cuda(self) -> bool:
        return self.timer.name == "cuda"

    def sync(self) -> None:
        self.timer.sync()

    def once(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """(seconds, result) of one call."""
        return self.timer.once(fn)

    def measure(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Measurement:
        """``warmup`` untimed calls, a sync, then ``repeats`` timed calls."""
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise InputError(f"repeats must be an integer >= 1, got {repeats!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise InputError(f"warmup must be an integer >= 0, got {warmup!r}")
        for _ in range(warmup):
            fn()
        self.sync()
        return Measurement([self.once(fn)[0] for _ in range(repeats)])

    def samples(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
        """Seconds of each of ``repeats`` calls after ``warmup`` untimed calls."""
        return self.measure(fn, repeats, warmup).samples_s

    def median(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
        return self.measure(fn, repeats, warmup).median_s


@dataclass
class Budget:
    """A wall-clock allowance in seconds, started at construction (``inf``: no limit)."""

    total_s: float = float("inf")
    start_s: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        t = self.total_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise InputError(f"budget_s must be a number > 0 (seconds), got {t!r}")

    @property
    def used_s(self) -> float:
        return time.perf_counter() - self.start_s

    @property
    def left_s(self) -> float:
        return self.total_s - self.used_s

    def share_s(self, fraction: float) -> float:
        """``fraction`` of what is left (``inf`` when unlimited)."""
        return max(self.left_s, 0.0) * fraction
