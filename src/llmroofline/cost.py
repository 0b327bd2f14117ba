"""Time of each operator on a device: roofline for kernels, link model for collectives.

For an operator row with ``count`` kernels, FLOPs ``F`` and bytes ``Q`` (row totals), and
an :class:`~llmroofline.specs.profile.Efficiency` ``e``:

    compute_s  = F / (peak[dtype] x e_c)     e_c = e.compute x M / (t ceil(M / t))
                                              x M / (M + e.gemm_half_rows), t = gemm_tile_rows,
                                              x (1 - w (1 - wave_efficiency(M, N, SMs))),
                                              w = e.wave_quantization,
                                              for a GEMM of M token rows; e.attention_compute
                                              for attention; e.compute otherwise
    memory_s   = Q / (mem_bw x e_b)          e_b = e.attention_bandwidth for attention,
                                              e.bandwidth otherwise; for attention
                                              Q += (1 - r) x kv_reread, r =
                                              e.gqa_kv_reuse if the op's group <=
                                              e.gqa_max_group (and, unless
                                              e.gqa_covers_sliding_window, the
                                              layer has no window), else 0
                                              (+ offloaded bytes / host bandwidth)
    comm_s     = collective time of the row's message (0 for kernels)
    overhead_s = count x e.launch_overhead_s
    kernel_s   = max(compute_s, memory_s) + (1 - o) x min(compute_s, memory_s)
                                              o = e.gemm_overlap for a GEMM, 1 otherwise
    time_s     = kernel_s + comm_s + overhead_s

``gemm_overlap`` is the share of the shorter of weight streaming and math that a GEMM
hides under the longer one. Near the ridge point neither dominates and real kernels
land well above the sharp roofline corner (pipeline prologue and epilogue, a last wave
that streams weights with few tiles in flight); o = 1 is the ideal corner, o = 0 no
overlap. Because ``o max + (1 - o) (compute + memory)`` is the same expression, sums of
it over decode steps stay in closed form.

Offloading (FlexGen / ZeRO-Inference style): a fraction of the weights and/or KV cache
lives in host memory and is streamed over the host link every time an operator needs it;
those bytes are timed at the host bandwidth, the rest at device bandwidth, one after the
other (conservative: transfers and device reads are not assumed to overlap).

``bound`` is the largest of the three regimes: ``overhead`` when the launch cost exceeds
the rest, ``communication`` for collectives, else ``compute`` or ``memory``.

Collectives over a group of n devices, message S bytes per device, link bandwidth bw per
direction (x efficiency.communication) and per-hop latency a:

    ring all-reduce     2 (n-1) a + 2 (n-1)/n S / bw        (NCCL's bandwidth-optimal default)
    tree all-reduce     2 log2(n) a + 2 S / bw               (NCCL, many nodes)
    one-shot all-reduce a + (n-1) S / bw                     (each GPU reads all peers: NVSwitch)
    two-shot all-reduce 2 a + 2 (n-1)/n S / bw               (reduce-scatter + all-gather in place)
    all-gather          (n-1) a + (n-1) S / bw               (ring; S = this device's part)
    reduce-scatter      (n-1) a + (n-1) S / bw               (ring; S = this device's part)
    all-to-all          a + (n-1)/n S / bw inside a node; (n-1) a + (n-1)/n S / bw across nodes
    point-to-point      a + S / bw

``auto`` picks, like TensorRT-LLM and vLLM's custom all-reduce, the fastest of one-shot and
two-shot on an NVLink-class node (small decode messages: one-shot; large prefill
messages: two-shot), and the faster of ring and tree elsewhere (PCIe, multi-node).
A group fits in one node when n <= the node size (``Layout.gpus_per_node``, by default the
device's ``nvlink_domain``: 8 on HGX boards, 72 in a GB200/GB300 NVL72 rack). Inside a
node a device with ``scaleup_group`` g (PCIe cards whose NVLink bridge joins pairs: g = 2)
prices a group of n > g over PCIe instead: bw = pcie_gb_s_bidir / 2, a = 5 us, ring or
tree (no all-to-all fabric); e.g. TP 4 on A100 PCIe, S bytes: 6 x 5 us + 1.5 S / 32 GB/s.
A group larger than the node crosses the per-GPU scale-out network (``scaleout_gb_s``,
default 50 GB/s = one 400 Gb/s NIC per GPU), with ``scaleout_latency_us`` per hop: e.g. a
ring all-reduce of S bytes over n GPUs crossing nodes takes 2 (n-1) a_net + 2 (n-1)/n S / (scaleout x communication).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .graph import Op
from .parallel import Layout
from .specs.hardware import PCIE_LATENCY_S, HardwareSpec
from .specs.precision import Precision, compute_dtypes
from .specs.profile import Efficiency

BOUNDS = ("compute", "memory", "communication", "overhead")


@dataclass(frozen=True)
class Link:
    bytes_s: float      # per direction, after efficiency
    latency_s: float
    all_to_all: bool    # switched fabric: every pair at full bandwidth at once


def host_link_bytes_s(hw: HardwareSpec, override: float | None = None, field: str = "host_bw"
                      ) -> float:
    """Host <-> device bandwidth per direction, bytes/s: ``override`` if given, else half
    the device's bidirectional host link (NVLink-C2C on Grace parts, ``host_gb_s_bidir``;
    else PCIe) (offloaded weights/KV, swapped KV)."""
    if override:
        return float(override)
    bidir = hw.host_bytes_s_bidir or hw.pcie_bytes_s_bidir or 0
    if not bidir:
        raise InputError(f"{field}: {hw.id} has no PCIe bandwidth in the catalog; give the "
                         "host link bandwidth explicitly")
    return bidir / 2


def kv_transfer_link(hw: HardwareSpec, devices: int, gpus_per_node: int | None = None) -> Link:
    """The link a prefill -> decode KV-cache transfer between ``devices`` devices crosses:
    the same choice as a collective over that group (``link_for``), at full efficiency;
    the network when the device data has no scale-up link."""
    if hw.scaleup_bytes_s() is None:
        return Link(hw.scaleout_bytes_s, hw.scaleout_latency_s, False)
    return link_for(hw, devices, Layout(gpus_per_node=gpus_per_node))


def link_for(hw: HardwareSpec, group: int, layout: Layout, eff: float = 1.0) -> Link:
    """The slowest link a collective over ``group`` devices crosses: the scale-up link
    inside a node; PCIe (``pcie_gb_s_bidir`` / 2 per direction, 5 us per hop) inside a node
    when the group is larger than the device's ``scaleup_group`` (NVLink-bridged pairs of
    PCIe cards); the scale-out network (or PCIe, if slower) across nodes."""
    intra = hw.scaleup_bytes_s()
    if intra is None:
        raise InputError(f"hardware {hw.id}: no interconnect bandwidth (scaleup_gb_s_bidir or "
                         "pcie_gb_s_bidir) to cost collectives over more than one device")
    pcie = hw.pcie_bytes_s()
    bridged = hw.scaleup_group is not None and group > hw.scaleup_group and pcie is not None
    if group <= layout.node_size(hw):
        if bridged:     # beyond the bridged pair: ring over PCIe, no all-to-all fabric
            return Link(pcie * eff, PCIE_LATENCY_S, False)
        return Link(intra * eff, hw.scaleup_latency_s(), hw.has_nvlink)
    inner = min(intra, pcie) if bridged else intra
    return Link(min(inner, hw.scaleout_bytes_s) * eff, hw.scaleout_latency_s, False)


def collective_time(kind: str, size_bytes, group: int, link: Link, algorithm: str = "auto"):
    """Seconds for one collective (formulas in the module docstring)."""
    n, a, bw = group, link.latency_s, link.bytes_s
    S = np.asarray(size_bytes, dtype=float)
    if n <= 1:
        return np.zeros_like(S)
    if kind == "allreduce":
        algos = {
            "ring": 2 * (n - 1) * a + 2 * (n - 1) / n * S / bw,
            "tree": 2 * math.log2(n) * a + 2 * S / bw,
            "oneshot": a + (n - 1) * S / bw,
            "twoshot": 2 * a + 2 * (n - 1) / n * S / bw,
        }
        if algorithm != "auto":
            return algos[algorithm]
        pick = ("oneshot", "twoshot") if link.all_to_all else ("ring", "tree")
        return np.minimum(algos[pick[0]], algos[pick[1]])
    if kind in ("allgather", "reducescatter"):
        return (n - 1) * a + (n - 1) * S / bw
    if kind == "alltoall":
        return (a if link.all_to_all else (n - 1) * a) + (n - 1) / n * S / bw
    if kind == "p2p":
        return a + S / bw
    raise ValueError(f"unknown collective {kind!r}")


@dataclass(frozen=True)
class Roofline:
    """Rates that turn FLOPs, bytes and messages into seconds for one device setup."""

    hw: HardwareSpec
    layout: Layout
    eff: Efficiency
    peaks: dict[str, float]     # compute class -> peak FLOP/s of the dtype it runs in
    dtypes: dict[str, str]      # compute class -> device dtype name
    host_bytes_s: float         # host link bandwidth for offloaded bytes (inf: no offload)
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, hw: HardwareSpec, prec: Precision, layout: Layout | None = None,
           efficiency: Efficiency | None = None) -> Roofline:
        """``efficiency`` defaults to the device's own block (ideal unless the file sets it)."""
        dtypes, warnings = compute_dtypes(prec, hw)
        layout = layout or Layout()
        host = math.inf
        if layout.offload_weights or layout.offload_kv:
            host = host_link_bytes_s(hw, layout.host_bw_bytes_s, "host_bw")
        return cls(hw=hw, layout=layout, eff=efficiency or hw.efficiency,
                   peaks={c: hw.peak_flops[dt] for c, dt in dtypes.items()},
                   dtypes=dtypes, host_bytes_s=host, warnings=tuple(warnings))

    def roofs(self) -> dict:
        """Achievable roofs: ``gemm`` = matmul peak x compute efficiency (FLOP/s), ``bw`` =
        bandwidth x its efficiency (bytes/s), ``peaks`` {FLOP/s: label} of the matmul, 16-bit
        and vector classes, and ``ridge`` = gemm / bw (FLOP/byte): the intensity where an
        operator turns from memory- to compute-bound. The one ridge-point formula."""
        e = self.eff
        peaks = {}
        for cls, label in (("gemm", "matmul"), ("gemm16", "16-bit"), ("vector", "vector")):
            peaks.setdefault(self.peaks[cls] * e.compute, f"{label} ({self.dtypes[cls].upper()})")
        gemm = self.peaks["gemm"] * e.compute
        return {"bw": self.bytes_s, "gemm": gemm, "peaks": peaks, "ridge": gemm / self.bytes_s}

    @property
    def bytes_s(self) -> float:
        """Achievable device-memory bandwidth for weight/activation streams."""
        return self.hw.mem_bw_bytes_s * self.eff.bandwidth

    def flops_s(self, op: Op):
        """Achievable FLOP/s of an operator (see module docstring)."""
        e = self.eff
        peak = self.peaks[op.compute]
        if op.kind == "attention":
            return peak * e.attn_compute
        if op.kind != "matmul":
            return peak * e.compute
        eff = e.compute
        m = np.asarray(op.rows, dtype=float)
        if e.gemm_half_rows:
            eff = eff * m / (m + e.gemm_half_rows)
        if e.gemm_tile_rows:
            t = e.gemm_tile_rows
            eff = eff * np.where(np.isfinite(m), m / (t * np.ceil(np.minimum(m, 1e18) / t)), 1.0)
        if e.wave_quantization and self.hw.sm_count:
            eff = eff * (1.0 - e.wave_quantization * (1.0 - wave_efficiency(m, op.cols,
                                                                           self.hw.sm_count)))
        return peak * eff

    def overlap(self, op: Op) -> float:
        """Share of the shorter roofline term hidden under the longer (see module docstring)."""
        return self.eff.gemm_overlap if op.kind == "matmul" else 1.0

    def comm_s(self, kind: str, size_bytes, group: int):
        link = link_for(self.hw, group, self.layout, self.eff.communication)
        return collective_time(kind, size_bytes, group, link, self.layout.allreduce)

    def terms(self, op: Op):
        """(compute_s, memory_s, comm_s, overhead_s) of one operator row."""
        overhead = op.count * self.eff.launch_overhead_s
        if op.name == "router":     # one per MoE layer: the routing stage's fixed kernels
            overhead = overhead + op.count * self.eff.moe_routing_overhead_s
        if op.collective:
            per = self.comm_s(op.collective, np.asarray(op.comm_bytes) / op.count, op.group)
            z = np.zeros_like(per)
            return z, z, op.count * per, overhead
        comp = op.flops / self.flops_s(op)
        bw = self.hw.mem_bw_bytes_s * (self.eff.attn_bandwidth if op.kind == "attention"
                                       else self.eff.bandwidth)
        mem = (op.bytes + (1 - self.eff.kv_reuse(op.kv_group, op.window)) * op.kv_reread) / bw
        if self.host_bytes_s < math.inf:
            host = self.layout.offload_weights * op.weight_bytes + self.layout.offload_kv * op.kv_bytes
            mem = mem + host / self.host_bytes_s - host / bw
        return comp, mem, np.zeros_like(comp), overhead


# Output tile of a large tensor-core GEMM (CUTLASS/cuBLAS's common 128 x 128 block): a GEMM
# of M < 128 rows runs a shorter M tile (a multiple of the 16-row MMA), one row of tiles.
WAVE_TILE_M = 128
WAVE_TILE_N = 128
MMA_ROWS = 16


def wave_efficiency(rows, cols, sm_count: int):
    """Share of the SM-time a data-parallel tiled GEMM keeps busy: tiles / (waves x SMs).

    ``tiles = ceil(M / tm) x ceil(N / 128)`` with ``tm = min(128, 16 ceil(M / 16))``;
    ``waves = ceil(tiles / sm_count)``; the last wave runs ``tiles mod sm_count`` tiles
    while the other SMs idle. ``rows``/``cols`` of inf (not a GEMM) give 1.
    """
    m = np.asarray(rows, dtype=float)
    n = np.asarray(cols, dtype=float)
    ok = np.isfinite(m) & np.isfinite(n) & (m > 0) & (n > 0)
    m = np.where(ok, m, 1.0)
    n = np.where(ok, n, 1.0)
    tm = np.minimum(WAVE_TILE_M, MMA_ROWS * np.ceil(m / MMA_ROWS))
    tiles = np.ceil(m / tm) * np.ceil(n / WAVE_TILE_N)
    waves = np.ceil(tiles / sm_count)
    return np.where(ok, tiles / (waves * sm_count), 1.0)


_BOUND_NAMES = np.array(["compute", "memory", "communication", "overhead"])


def kernel_s(compute_s, memory_s, overlap: float = 1.0):
    """Kernel time from its two roofline terms: max + (1 - overlap) x min."""
    roof = np.maximum(compute_s, memory_s)
    if overlap >= 1.0:
        return roof
    return roof + (1.0 - overlap) * np.minimum(compute_s, memory_s)


def exposed_comm_s(comm_s, matmul_s):
    """Collective seconds left visible when a step's collectives overlap its matmuls:
    ``max(C - G, 0)`` for collective time C and matmul kernel time G of the step."""
    return np.maximum(np.asarray(comm_s, float) - matmul_s, 0.0)


def exposed_fraction(terms) -> np.ndarray:
    """Share of a step's collective time left visible under overlap (``exposed_comm_s / C``;
    1 when the step has none); ``terms``: (op, compute_s, memory_s, comm_s, overhead_s)."""
    comm = sum(t[3] for t in terms)
    gemm = sum(np.maximum(t[1], t[2]) for t in terms if t[0].kind == "matmul")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(comm > 0, exposed_comm_s(comm, gemm) / np.where(comm > 0, comm, 1), 1.0)


def combine(compute_s, memory_s, comm_s, overhead_s, overlap: float = 1.0):
    """Time and bound label from the four terms (see module docstring)."""
    roof = kernel_s(compute_s, memory_s, overlap)
    code = np.select([overhead_s > np.maximum(roof, comm_s), comm_s > roof, compute_s >= memory_s],
                     [3, 2, 0], default=1)
    return roof + comm_s + overhead_s, _BOUND_NAMES[code]
