"""Timing helpers shared by ``probe`` and ``bench``: lazy torch import, clocks, threads.

torch and transformers are imported only inside these functions, so ``import llmroofline``
stays light; without them the user gets one line naming the extra to install.

A :class:`Clock` times a callable with warm-up and repeats and returns every sample (the
callers take medians). On CPU it reads ``time.perf_counter`` around the call (CPU kernels
are synchronous). On CUDA it records ``torch.cuda.Event`` pairs around the call and
synchronizes on the end event, so each sample is the device time of the work enqueued,
including launch gaps (untested here: this repository's machines have no GPU).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import InputError

INSTALL_HINT = 'pip install "llmroofline[bench]"'


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


def check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N'; cuda only when a GPU is visible."""
    d = str(device).strip().lower()
    if d != "cpu" and not (d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit())):
        raise InputError(f"device must be cpu or cuda (or cuda:N), got {device!r}")
    if d.startswith("cuda"):
        torch = require_torch()
        if not torch.cuda.is_available():
            raise InputError("device: cuda requested but PyTorch sees no GPU "
                             "(torch.cuda.is_available() is False); use --device cpu")
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


@dataclass
class Clock:
    """Times callables on one device (see module docstring)."""

    device: str = "cpu"

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            import torch
            torch.cuda.synchronize(self.device)

    def samples(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
        """Seconds of each of ``repeats`` calls after ``warmup`` untimed calls."""
        for _ in range(warmup):
            fn()
        self.sync()
        out = []
        for _ in range(repeats):
            out.append(self.once(fn)[0])
        return out

    def once(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """(seconds, result) of one call."""
        if self.cuda:
            import torch
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            r = fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) * 1e-3, r
        t = time.perf_counter()
        r = fn()
        return time.perf_counter() - t, r

    def median(self, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
        return median(self.samples(fn, repeats, warmup))
