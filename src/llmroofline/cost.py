"""Roofline time of each operator on a device.

For an operator row with ``count`` kernels, FLOPs ``F`` and bytes ``Q`` (row totals):

    compute_s  = F / (peak[dtype] x efficiency.compute)
    memory_s   = Q / (mem_bw x efficiency.bandwidth)
    overhead_s = count x efficiency.launch_overhead_s
    time_s     = max(compute_s, memory_s) + overhead_s

``bound`` is ``overhead`` when the launch cost exceeds both roofs, otherwise whichever
roof is higher (``compute`` or ``memory``). All efficiency physics lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .graph import Op
from .specs.hardware import HardwareSpec
from .specs.precision import Precision, compute_dtypes

BOUNDS = ("compute", "memory", "overhead")


@dataclass(frozen=True)
class Roofline:
    """Rates that turn FLOPs and bytes into seconds for one device and precision."""

    flops_s: dict[str, float]   # compute class -> achievable FLOP/s
    bytes_s: float              # achievable bytes/s of device memory
    launch_s: float             # fixed seconds per kernel launch
    dtypes: dict[str, str]      # compute class -> device dtype name
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, hw: HardwareSpec, prec: Precision) -> Roofline:
        dtypes, warnings = compute_dtypes(prec, hw)
        eff = hw.efficiency
        return cls(flops_s={c: hw.peak_flops[dt] * eff.compute for c, dt in dtypes.items()},
                   bytes_s=hw.mem_bw_bytes_s * eff.bandwidth,
                   launch_s=eff.launch_overhead_s, dtypes=dtypes, warnings=tuple(warnings))

    def terms(self, op: Op) -> tuple[np.ndarray, np.ndarray, float]:
        """(compute_s, memory_s, overhead_s) of one operator row."""
        return op.flops / self.flops_s[op.compute], op.bytes / self.bytes_s, op.count * self.launch_s


def combine(compute_s, memory_s, overhead_s):
    """Roofline time and bound label from the three terms (see module docstring)."""
    roof = np.maximum(compute_s, memory_s)
    bound = np.where(overhead_s > roof, "overhead",
                     np.where(compute_s >= memory_s, "compute", "memory"))
    return roof + overhead_s, bound
