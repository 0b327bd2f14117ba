"""The measurements of ``llmroofline probe`` (PyTorch, CPU or CUDA).

Every number is a median of ``repeats`` timed runs after a warm-up; the runs of all kernels
are interleaved in rounds (see :func:`probe`). Sizes (``SIZES``) are chosen so that the
data exceeds the last-level cache where that matters:

- **stream bandwidth**: copy ``b = a`` (bytes read + written), triad ``a = b + s c``
  (2 reads + 1 write), read-only reduction ``sum(a)``, and on CPU numpy's copy (which
  uses non-temporal stores and so reaches more); arrays of ``pool/3`` bytes each. The
  device bandwidth ``mem_bw`` is the best of them.
- **GEMM throughput per dtype**: large squares ``S x S x S`` (FLOPs ``2 S^3``), and the
  decode-shaped curve: ``M = 1..256`` token rows times a *set* of weights shaped like a
  model's layers (:func:`weight_set`) that together fill the pool (larger than the caches,
  as in one decode step); FLOPs ``2 M K N`` per matrix, bytes = weights + activations in
  and out.
- **dispatch**: the cost of one tiny operator call (``torch.add`` of 1-element tensors).
- **framework overhead**: a tiny Llama (hidden 64) with 1..8 layers run by ``transformers``
  exactly as ``bench`` runs models (static cache, manual loop): per-layer and per-step
  time of prefill and decode when the kernels do no work.
- **attention**: ``scaled_dot_product_attention`` decode (one query against a KV cache of
  L tokens; bytes = K and V read plus q and o) and causal prefill (S x S; FLOPs counted as
  the engine does, over the causal pairs only).

:func:`probe` fits the efficiency block from these (``probe/fit.py``) and returns a
:class:`ProbeResult` that renders as a device file in the catalog's format.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from .fit import fit_gemm, gemm_model_s
from .overhead import TINY_PREFILL_TOKENS, _decode_rows, _framework, _framework_decoder, tiny_config  # noqa: F401
from .timing import Clock, check_device, check_threads, median, require_torch, torch_threads

DTYPES = ("bf16", "fp16", "fp32")

SIZES = {
    "quick": dict(pool_mb=384, squares=(256, 512, 1024, 2048), rows=(1, 4, 16, 64, 256), repeats=3,
                  dispatch_calls=300, attn_batch=2, attn_kv=(1024, 4096), attn_prefill=(512, 1024),
                  tiny_layers=(1, 2, 4), tiny_steps=16),
    "full": dict(pool_mb=1024, squares=(256, 512, 1024, 2048, 4096),
                 rows=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                 repeats=5, dispatch_calls=2000, attn_batch=4, attn_kv=(512, 2048, 8192),
                 attn_prefill=(512, 1024, 2048), tiny_layers=(1, 2, 4, 8), tiny_steps=16),
}
ATTN_HEADS, ATTN_HEAD_DIM = 16, 128
_H, _KV, _F, _V = 2048, 512, 8192, 32000
WEIGHT_SET = [(_H, _H), (_KV, _H), (_KV, _H), (_H, _H), (_F, _H), (_F, _H), (_H, _F)] * 2 + [(_V, _H)]
@dataclass
class ProbeResult:
    """Raw measurements, the fitted efficiency and machine facts (SI units)."""

    device: str
    name: str
    vendor: str
    family: str
    threads: int
    torch_version: str
    quick: bool
    fit_dtype: str
    repeats: int
    memory_bytes: float
    llc_bytes: float | None
    cores: int | None
    stream_bytes_s: dict[str, float] = field(default_factory=dict)
    square: list[dict] = field(default_factory=list)       # dtype, size, flops_s
    gemm_curve: list[dict] = field(default_factory=list)   # dtype, rows, flops, bytes, time_s
    weight_set_bytes: dict[str, float] = field(default_factory=dict)
    dispatch_s: float = float("nan")
    overhead: dict = field(default_factory=dict)
    attention: list[dict] = field(default_factory=list)
    efficiency: dict = field(default_factory=dict)        # data-file fields (us for times)
    gemm_fit: dict = field(default_factory=dict)
    date: str = ""
    budget_s: float = float("inf")
    elapsed_s: float = float("nan")
    driver: str = ""
    skipped: list[str] = field(default_factory=list)      # what was left out, and why
    kernels: list[dict] = field(default_factory=list)     # kernel-table rows (kernels.py)
    rates_flops_s: dict[str, float] = field(default_factory=dict)   # step 1 of probe()

    @property
    def mem_bw_bytes_s(self) -> float:
        return max(self.stream_bytes_s.values())

    @property
    def peaks_flops_s(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.square + [dict(dtype=g["dtype"], flops_s=g["flops"] / g["time_s"])
                                for g in self.gemm_curve]:
            out[r["dtype"]] = max(out.get(r["dtype"], 0.0), r["flops_s"])
        return out

    def curve(self, dtype: str) -> list[dict]:
        """Decode-shaped GEMM points of one dtype with achieved GB/s and the fitted model."""
        pts = [g for g in self.gemm_curve if g["dtype"] == dtype]
        out = []
        for g in pts:
            d = dict(g, bytes_s=g["bytes"] / g["time_s"], flops_s=g["flops"] / g["time_s"])
            if dtype == self.fit_dtype and self.gemm_fit:
                d["model_s"] = float(gemm_model_s(
                    g["rows"], g["flops"], g["bytes"], self.peaks_flops_s[dtype],
                    self.mem_bw_bytes_s, self.gemm_fit["compute"], self.gemm_fit["gemm_half_rows"],
                    self.gemm_fit["bandwidth"]))
            out.append(d)
        return out

    def device_dict(self) -> dict:
        """Catalog fields of the device file (decimal units, see devices.toml)."""
        d = {"name": self.name, "vendor": self.vendor, "family": self.family,
             "memory_gb": round(self.memory_bytes / 1e9, 3),
             "mem_bw_gb_s": round(self.mem_bw_bytes_s / 1e9, 3)}
        for dt, f in (("fp32", "fp32_tflops"), ("fp16", "fp16_tflops"), ("bf16", "bf16_tflops")):
            if dt in self.peaks_flops_s:       # 6 significant digits: CPUs run at GFLOP/s
                d[f] = float(f"{self.peaks_flops_s[dt] / 1e12:.6g}")
        if self.llc_bytes:
            d["l2_mb"] = round(self.llc_bytes / 1e6, 3)
        if self.cores:
            d["sm_count"] = int(self.cores)
        d["source"] = (f"llmroofline probe {self.date}: torch {self.torch_version}, "
                       f"{self.device}, {self.threads} thread(s), medians of {self.repeats}"
                       + (" (quick)" if self.quick else ""))
        d["confidence"] = "measured"
        d["notes"] = self.notes()
        d["efficiency"] = dict(self.efficiency)
        return d

    def notes(self) -> str:
        cur = self.curve(self.fit_dtype)
        gbs = ", ".join(f"M={c['rows']}: {c['bytes_s'] / 1e9:.1f}" for c in cur)
        st = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in self.stream_bytes_s.items())
        oh = self.overhead
        return (f"Measured peaks, not a datasheet. Stream GB/s: {st}. Decode-shaped "
                f"{self.fit_dtype} GEMM GB/s (weights {self.weight_set_bytes.get(self.fit_dtype, 0) / 1e6:.0f} MB): "
                f"{gbs}. Dispatch {self.dispatch_s * 1e6:.1f} us/op; framework "
                f"{oh.get('per_layer_s', 0) * 1e3:.3f} ms/layer (decode), "
                f"{oh.get('prefill_per_layer_s', 0) * 1e3:.3f} ms/layer (prefill), step "
                f"{oh.get('decode_intercept_s', 0) * 1e3:.3f} ms. Efficiency fitted for "
                f"{self.fit_dtype} (GEMM fit rms log error {self.gemm_fit.get('rms_log_error', 0):.2f}).")

    def to_toml(self) -> str:
        d = self.device_dict()
        eff = d.pop("efficiency")
        lines = ["# Device file written by `llmroofline probe`: measured ceilings of this machine in",
                 "# the catalog's format (use it as --hardware FILE). Peaks are the best measured",
                 "# rates; [efficiency] is fitted to the measured curves (docs/bench.md).",
                 f"# probe: device={self.device} threads={self.threads} dtype={self.fit_dtype} "
                 f"quick={str(self.quick).lower()} torch={self.torch_version}", ""]
        lines += [f"{k} = {_toml(v)}" for k, v in d.items()]
        lines += ["", "[efficiency]"] + [f"{k} = {_toml(v)}" for k, v in eff.items()]
        return "\n".join(lines) + "\n"

    def provenance(self) -> dict:
        """Provenance columns of the kernel table."""
        return {"device_name": self.name, "driver": self.driver or "-",
                "torch": self.torch_version, "date": self.date}

    def write_kernels(self, path):
        """Write :attr:`kernels` as a kernel table (``kernels.py``)."""
        from .kernels import write_table
        where = f"{self.device}, {self.threads} thread(s)" if self.device == "cpu" else self.device
        return write_table(self.kernels, path, self.provenance(),
                           comment=f"llmroofline probe {self.date} on {self.name} ({where}); "
                                   f"medians of {self.repeats}" + (" (quick)" if self.quick else ""))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mem_bw_bytes_s"] = self.mem_bw_bytes_s
        d["peaks_flops_s"] = self.peaks_flops_s
        d["device_file"] = self.device_dict()
        return d


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(float(f"{v:.7g}"))     # significant digits: CPU peaks are ~1e-3 TFLOP/s
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{s}"'


def probe_header(path) -> dict[str, str]:
    """The ``# probe: key=value ...`` line of a device file written by probe ({} if none)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("# probe:"):
                    return dict(kv.split("=", 1) for kv in line[8:].split() if "=" in kv)
                if line.strip() and not line.startswith("#"):
                    break
    except OSError:
        pass
    return {}


# -- machine facts -----------------------------------------------------------------------
def _cpu_facts() -> dict:
    name, vendor = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        name = m.group(1).strip() if m else name
        v = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
        vendor = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(v.group(1), v.group(1)) if v else ""
    except OSError:
        pass
    llc = None
    for idx in range(8):
        base = f"/sys/devices/system/cpu/cpu0/cache/index{idx}"
        try:
            with open(f"{base}/size") as f:
                size = f.read().strip()
        except OSError:
            break
        mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(size[-1:].upper(), 1)
        val = float(size.rstrip("KMGkmg")) * mult
        llc = max(llc or 0.0, val)
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        mem = 0
    return {"name": name, "vendor": vendor, "family": "cpu", "memory_bytes": float(mem),
            "llc_bytes": llc}


_CUDA_FAMILY = {7: {0: "volta", 5: "turing"}, 8: {0: "ampere", 6: "ampere", 7: "ampere", 9: "ada"},
                9: {0: "hopper"}, 10: {0: "blackwell"}, 12: {0: "blackwell"}}


def _cuda_facts(device: str) -> dict:
    import torch
    p = torch.cuda.get_device_properties(device)
    fam = _CUDA_FAMILY.get(p.major, {}).get(p.minor, f"sm{p.major}{p.minor}")
    driver = f"cuda {torch.version.cuda or torch.version.hip}, sm_{p.major}{p.minor}"
    try:                                  # the kernel driver's version, where readable
        with open("/proc/driver/nvidia/version", encoding="utf-8") as f:
            m = re.search(r"\b(\d{3,}\.\d+(?:\.\d+)?)\b", f.readline())
        if m:
            driver = f"driver {m.group(1)}, " + driver
    except OSError:
        pass
    return {"name": p.name, "vendor": "NVIDIA" if torch.version.cuda else "AMD", "family": fam,
            "driver": driver,
            "memory_bytes": float(p.total_memory),
            "llc_bytes": float(getattr(p, "L2_cache_size", 0) or 0) or None,
            "cores": int(p.multi_processor_count)}


def _model_tokens(name: str) -> tuple[set[str], set[str]]:
    """(model-number tokens such as 'a100', 'sxm4', '80gb', 't4', '8480' but not a bare
    '80'; form-factor words 'pcie' / 'nvl')."""
    low = name.lower()
    toks = {t for t in re.findall(r"[a-z]*\d+[a-z0-9]*", low)
            if (len(t) >= 2 and not t.isdigit()) or len(t) >= 3}
    return toks, {w for w in ("pcie", "nvl") if w in re.findall(r"[a-z]+", low)}


def match_catalog(name: str) -> str | None:
    """Catalog id sharing the most model-number tokens with ``name``; ties go to the entry
    without a form factor the name lacks (SXM parts report none: 'NVIDIA H100 80GB HBM3'),
    then to the fewest other tokens. None when nothing is shared."""
    from ..specs.hardware import _catalog_raw
    toks, form = _model_tokens(name)
    best, best_score = None, (0, 0, 0)
    for dev_id, d in _catalog_raw().items():
        theirs, their_form = _model_tokens(str(d.get("name", "")))
        score = (len(toks & theirs), -len(their_form - form), -len(theirs - toks))
        if score[0] and score > best_score:
            best, best_score = dev_id, score
    return best


# -- measurements --------------------------------------------------------------------------
BUDGET_S = {("cpu", True): 4.0, ("cpu", False): 40.0, ("cuda", True): 60.0, ("cuda", False): 240.0}
MIN_ROUNDS = 3
SLOW_DTYPE_FRACTION = 0.05   # a 16-bit dtype below this share of the fp32 rate is skipped
RATE_SIZE = {"cpu": {"fp32": 512, "bf16": 256, "fp16": 256}, "cuda": 4096}
FRAMEWORK_RESERVE_S = {"decoder": 1.0, "transformers": 2.5, "transformers+import": 15.0}


def probe(device: str = "cpu", quick: bool = False, threads: int | None = None,
          dtype: str = "bf16", progress=None, budget_s: float | None = None) -> ProbeResult:
    """Measure this device's ceilings and fit an efficiency block (module docstring).

    ``dtype``: the precision whose GEMM curve the efficiency block is fitted to (bench and
    analyze then should use the same). ``threads``: CPU threads (default: torch's).
    ``device``: cpu, cuda, cuda:N or auto. ``budget_s``: wall-clock seconds for the whole
    probe (default ``BUDGET_S``: CPU 4 quick / 40 full); see :func:`_plan` for how the
    sizes are capped to it. ``progress``: None, a ``say(str)`` callable or a
    :class:`.progress.Progress`.

    Steps: (1) the rate of each dtype from one mid-size square GEMM; a 16-bit dtype other
    than ``dtype`` running below ``SLOW_DTYPE_FRACTION`` of fp32 is skipped (stated in
    ``skipped``); (2) every kernel is warmed up once in order of priority, while the budget
    allows (:func:`_plan`); (3) the kept kernels are timed in ``repeats`` rounds (each
    kernel once per round) and each kernel's median is kept: a neighbour that slows a
    shared machine for a few seconds then spoils one sample of many kernels instead of
    all samples of one; (4) dispatch and framework overhead; (5) the fits.
    """
    from .progress import as_progress
    from .timing import Budget
    from .timing import parse_device
    parse_device(device)                   # bad input fails before torch is imported
    threads = check_threads(threads)
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    torch = require_torch()
    device = check_device(device)
    kind = "cuda" if device.startswith("cuda") else "cpu"
    budget = Budget(BUDGET_S[(kind, bool(quick))] if budget_s is None else budget_s)
    prog = as_progress(progress)
    cfg = SIZES["quick" if quick else "full"]
    clock = Clock(device)
    reps = cfg["repeats"]
    with torch_threads(threads) as nthreads:
        facts = _cuda_facts(device) if clock.cuda else {**_cpu_facts(), "cores": nthreads}
        res = ProbeResult(device=device, name=facts["name"], vendor=facts["vendor"],
                          family=facts["family"], threads=nthreads if not clock.cuda else 0,
                          torch_version=torch.__version__.split("+")[0], quick=quick,
                          fit_dtype=dtype, repeats=reps, memory_bytes=facts["memory_bytes"],
                          llc_bytes=facts["llc_bytes"], cores=facts.get("cores"),
                          date=datetime.date.today().isoformat(), budget_s=budget.total_s,
                          driver=facts.get("driver", ""))
        pool_mb = cfg["pool_mb"] if clock.cuda else min(cfg["pool_mb"],
                                                        _pool_cap_mb(budget, facts["llc_bytes"]))
        pool = torch.empty(pool_mb * 1_000_000 // 4, dtype=torch.float32, device=device)
        pool.fill_(0.5)          # touch every page once; fp32 0.5 reads as 0.5/0 in 16 bits
        tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        wanted = ["fp32", "bf16"] + ([dtype] if dtype not in ("fp32", "bf16") else [])
        if not quick and "fp16" not in wanted:
            wanted.append("fp16")
        rates, bw = _rates(torch, clock, tdt, wanted, pool, device)
        res.rates_flops_s = dict(rates)
        dtypes = []
        for dt in wanted:
            frac = rates[dt] / rates["fp32"]
            if dt not in ("fp32", dtype) and frac < SLOW_DTYPE_FRACTION:
                res.skipped.append(f"{dt} matmuls skipped: {rates[dt] / 1e9:.2f} GFLOP/s = "
                                   f"{frac:.1%} of fp32 on this {kind.upper()} "
                                   f"(< {SLOW_DTYPE_FRACTION:.0%})")
            else:
                dtypes.append(dt)
        jobs = _stream(torch, pool, clock)
        for dt in sorted(dtypes, key=lambda d: d != dtype):       # fit dtype first
            if dt in ("fp32", "bf16", dtype):
                jobs += _decode_curve(torch, pool, tdt[dt], dt, cfg)
            jobs += _squares(torch, tdt[dt], dt, cfg["squares"], device)
        jobs += _attention(torch, pool, tdt[dtype], dtype, cfg)
        if clock.cuda:
            jobs += _cuda_sweep(torch, tdt, dtypes, dtype, device, res, facts)
        # within a rank: the fitted dtype's decode-shaped curve first, then its other kernels
        # (they make the efficiency block), then the cheapest
        jobs = _by_rank(jobs, lambda j: (j.get("dtype", dtype) != dtype, j["job"] != "curve",
                                         _est(j, rates, bw)))
        fw = _framework_kind(quick, budget)
        reserve = FRAMEWORK_RESERVE_S[fw] + 0.5          # + dispatch and the fits
        allowance = max(budget.left_s - reserve, 0.0)
        with prog.step(f"warm-up of up to {len(jobs)} kernels (stream, GEMMs "
                       f"{', '.join(dtypes)}, attention)", len(jobs), allowance / (1 + reps)) as adv:
            kept, dropped = _plan(jobs, clock, reps, allowance, rates, bw, adv)
        if dropped:
            res.skipped.append(f"{len(dropped)} kernel(s) left out by the {budget.total_s:g} s "
                               f"budget: " + ", ".join(_label(j) for j in dropped[:8])
                               + (" ..." if len(dropped) > 8 else ""))
        samples: list[list[float]] = [[] for _ in kept]
        est = sum(j["warm_s"] for j in kept) * reps
        with prog.step(f"timing {len(kept)} kernels in {reps} rounds", reps * len(kept), est) as adv:
            for r in range(reps):
                t_round = budget.used_s
                for j, out in zip(kept, samples):
                    out.append(clock.once(j["fn"])[0])
                    adv()
                # a loaded machine runs slower than the warm-up said: stop after MIN_ROUNDS
                # rounds rather than overrun the budget (the medians then use fewer samples)
                took = budget.used_s - t_round
                if r + 1 >= MIN_ROUNDS and r + 1 < reps and budget.left_s - reserve < took:
                    res.skipped.append(f"rounds cut to {r + 1} of {reps} by the budget")
                    break
        for j, out in zip(kept, samples):
            j.pop("fn")
            j["time_s"] = median(out)
            j["repeats"] = len(out)
            _store(res, j)
        del jobs, kept, dropped, pool
        with prog.step("dispatch and framework overhead", 1, FRAMEWORK_RESERVE_S[fw]):
            res.dispatch_s = _dispatch(torch, clock, cfg["dispatch_calls"], device)
            allowed = max(budget.left_s - 0.6, 0.3)       # the fits take ~0.5 s
            if fw == "decoder":
                res.overhead = _framework_decoder(cfg, tdt[dtype], dtype, device, reps, clock, res,
                                                  allowed)
            else:
                res.overhead = _framework(cfg, dtype, device, reps, 0.85 * allowed, res)
                _decode_rows(cfg, tdt[dtype], dtype, device, clock, res, rounds=3,
                             allowed_s=max(budget.left_s - 0.6, 0.2))
    _fit(res)
    res.elapsed_s = budget.used_s
    return res


def _pool_cap_mb(budget, llc_bytes: float | None = None) -> int:
    """CPU pool in MB: 24 MB per second of budget, at least 6x the last-level cache (each
    stream array, a third of the pool, then spans 2x the cache) and 64 MB, at most 1024 MB
    (the full pool takes seconds of 16-bit GEMM work per round on CPUs without 16-bit
    matrix units)."""
    floor = max(64.0, 6 * (llc_bytes or 0) / 1e6)
    return int(min(1024, max(floor, 24 * budget.total_s)))


def _rates(torch, clock: Clock, tdt: dict, dtypes, pool, device) -> tuple[dict, float]:
    """FLOP/s of one square GEMM per dtype (CPU: 512 fp32 / 256 16-bit; CUDA: 4096) and the
    bytes/s of one copy of a third of the pool (read + write)."""
    rates = {}
    for dt in dtypes:
        s = RATE_SIZE["cuda"] if clock.cuda else RATE_SIZE["cpu"][dt]
        a = torch.randn(s, s, device=device).to(tdt[dt])
        t = clock.measure(lambda: torch.mm(a, a), 1, 1).median_s
        rates[dt] = 2.0 * s ** 3 / t
    n = pool.numel() // 3
    src, dst = pool[:n], pool[n:2 * n]
    t = clock.measure(lambda: dst.copy_(src), 1, 1).median_s
    return rates, 8.0 * n / t


def _by_rank(jobs: list[dict], cost=None) -> list[dict]:
    """Jobs ordered by their rank within their family (the i-th size of each kernel); within
    a rank required jobs first, then by ``cost(job)`` (default: the given order). The budget
    then buys the small sizes of every kernel, cheapest first, before the large sizes of any."""
    seen: dict[str, int] = {}
    ranked = []
    for i, j in enumerate(jobs):
        fam = j.get("family", str(i))
        ranked.append((seen.get(fam, 0), not j.get("required"), cost(j) if cost else i, i, j))
        seen[fam] = seen.get(fam, 0) + 1
    return [t[-1] for t in sorted(ranked, key=lambda t: t[:4])]


def _framework_kind(quick: bool, budget) -> str:
    """decoder (plain torch) for quick runs unless transformers is loaded already; else
    transformers when the budget leaves room for its import."""
    import sys
    loaded = "transformers.models.llama.modeling_llama" in sys.modules
    if loaded:
        return "transformers"
    if quick or budget.left_s < 2 * FRAMEWORK_RESERVE_S["transformers+import"]:
        return "decoder"
    return "transformers+import"


def _est(j: dict, rates: dict, bw: float) -> float:
    """Time bound of a job from the dtype's square-GEMM rate and the copy bandwidth."""
    dt = j.get("dtype", "fp32")
    r = rates.get(dt) or rates.get("bf16") or max(rates.values())
    return max(j.get("flops", 0.0) / r, j.get("bytes", 0.0) / bw)


def _plan(jobs, clock: Clock, reps: int, allowance_s: float, rates, bw, advance):
    """Warm up jobs in order while ``(1 + reps)`` x the spent warm-up fits the allowance.

    A job starts only if its estimate fits what is left: the larger of the rate bound
    (:func:`_est`) and, within a family (same kernel at growing sizes), the last warm-up
    time scaled by the ratio of the bounds. Jobs marked ``required`` always run (stream
    kernels, the smallest decode-shaped GEMM of the fit dtype). Returns (kept, dropped);
    each kept job gets ``warm_s``.
    """
    kept, dropped, last = [], [], {}
    spent = 0.0
    closed = set()
    for j in jobs:
        fam = j.get("family", _label(j))
        bound = _est(j, rates, bw)
        est = bound
        if fam in last:
            t0, b0 = last[fam]
            est = max(bound, t0 * bound / b0)
        if not j.get("required") and (fam in closed or spent + est * (1 + reps) > allowance_s):
            closed.add(fam)
            dropped.append(j)
            advance()
            continue
        t = clock.once(j["fn"])[0]
        j["warm_s"] = t
        spent += t * (1 + reps)
        last[fam] = (t, max(bound, 1e-12))
        kept.append(j)
        advance()
    return kept, dropped


def _label(j: dict) -> str:
    if j["job"] == "stream":
        return f"stream {j['name']}"
    if j["job"] == "square":
        return f"{j['dtype']} square {j['size']}"
    if j["job"] == "curve":
        return f"{j['dtype']} M={j['rows']}"
    if j.get("op") == "gemm":
        return f"{j['dtype']} gemm {j['m']}x{j['n']}x{j['k']}"
    return f"{j.get('op', j.get('kind'))} {j.get('kv_len', j.get('length'))}"


def _store(res: ProbeResult, j: dict) -> None:
    kind = j.pop("job")
    j.pop("family", None)
    j.pop("required", None)
    if kind == "stream":
        res.stream_bytes_s[j["name"]] = j["bytes"] / j["time_s"]
        return
    if kind == "square":
        j["flops_s"] = j["flops"] / j["time_s"]
        res.square.append(j)
    elif kind == "curve":
        res.weight_set_bytes[j["dtype"]] = j.pop("weight_bytes")
        res.gemm_curve.append(j)
    elif kind == "attention":
        res.attention.append(j)
    res.kernels.append(_kernel_row(kind, j))


def _kernel_row(kind: str, j: dict) -> dict:
    """The kernel-table row (``kernels.py``) of a stored measurement."""
    keys = ("op", "dtype", "m", "n", "k", "matrices", "heads", "kv_heads", "head_dim", "kv_len",
            "layers", "hidden", "ffn", "vocab", "flops", "bytes", "time_s", "repeats")
    if kind == "square":
        s = j["size"]
        return {"op": "gemm", "dtype": j["dtype"], "m": s, "n": s, "k": s, "matrices": f"{s}x{s}*1",
                "flops": j["flops"], "bytes": j["bytes"], "time_s": j["time_s"], "repeats": j["repeats"]}
    if kind == "curve":
        return {"op": "gemm", "dtype": j["dtype"], "m": j["rows"], "matrices": j["shapes"],
                "flops": j["flops"], "bytes": j["bytes"], "time_s": j["time_s"], "repeats": j["repeats"]}
    if kind == "attention":
        return {"op": f"attn_{j['kind']}", "dtype": j["dtype"], "m": j["batch"],
                "heads": ATTN_HEADS, "kv_heads": ATTN_HEADS, "head_dim": ATTN_HEAD_DIM,
                "kv_len": j["length"], "flops": j["flops"], "bytes": j["bytes"],
                "time_s": j["time_s"], "repeats": j["repeats"]}
    return {k: j[k] for k in keys if k in j}


def _cuda_sweep(torch, tdt, dtypes, fit_dtype, device, res: ProbeResult, facts) -> list[dict]:
    """GEMM sweeps (16-bit dtypes and fp8 where supported) and GQA attention (sweep.py)."""
    from .sweep import SWEEP, attention_jobs, fp8_support, gemm_jobs
    cfg = SWEEP["cuda"]
    cache = max(4 * (facts.get("llc_bytes") or 0), 64e6)
    jobs = []
    for dt in [d for d in dtypes if d in ("bf16", "fp16")]:
        jobs += gemm_jobs(torch, tdt[dt], dt, device, cfg, cache)
    ok, why = fp8_support(torch, device)
    if ok:
        jobs += gemm_jobs(torch, torch.float8_e4m3fn, "fp8", device, cfg, cache)
    else:
        res.skipped.append(why)
    jobs += attention_jobs(torch, tdt[fit_dtype if fit_dtype != "fp32" else "bf16"],
                           fit_dtype if fit_dtype != "fp32" else "bf16", device, cfg)
    return jobs


def _stream(torch, pool, clock: Clock) -> list[dict]:
    n = pool.numel() // 3
    a, b, c = pool[:n], pool[n:2 * n], pool[2 * n:3 * n]
    eb = 4.0 * n
    jobs = [{"job": "stream", "name": "copy", "bytes": 2 * eb, "fn": lambda: b.copy_(a)},
            {"job": "stream", "name": "triad", "bytes": 3 * eb,
             "fn": lambda: torch.add(b, c, alpha=0.5, out=a)},
            {"job": "stream", "name": "read", "bytes": eb, "fn": lambda: a.sum()}]
    if not clock.cuda:
        x, y = a.numpy(), b.numpy()
        jobs.append({"job": "stream", "name": "numpy_copy", "bytes": 2 * eb,
                     "fn": lambda: np.copyto(y, x)})
    for j in jobs:
        j.update(required=True, family=f"stream-{j['name']}")
    return jobs


def _squares(torch, tdt, dt: str, sizes, device: str) -> list[dict]:
    jobs = []
    for s in sizes:
        a = torch.randn(s, s, device=device).to(tdt)
        b = torch.randn(s, s, device=device).to(tdt)
        jobs.append({"job": "square", "dtype": dt, "size": s, "rows": s, "flops": 2.0 * s ** 3,
                     "family": f"square-{dt}",
                     "bytes": 3.0 * s * s * a.element_size(),
                     "fn": (lambda a=a, b=b: torch.mm(a, b))})
    return jobs


def weight_set(elements: int) -> list[tuple[int, int]]:
    """(N, K) shapes of the decode-shaped weight set filling ``elements`` elements.

    The layers of a Llama-like model cycled in order (``WEIGHT_SET``: q, k, v, o, gate, up,
    down at hidden 2048, 4:1 grouped-query attention, MLP 8192) and a vocabulary-like
    slab, so the curve averages over the skinny, square and wide matrices a decode step
    streams, and the set as a whole exceeds the caches.
    """
    out, used, i = [], 0, 0
    while True:
        n, k = WEIGHT_SET[i % len(WEIGHT_SET)]
        if used + n * k > elements:
            break
        out.append((n, k))
        used += n * k
        i += 1
    return out or [WEIGHT_SET[0]]


def _decode_curve(torch, pool, tdt, dt: str, cfg: dict) -> list[dict]:
    flat = pool.view(tdt)
    shapes = weight_set(flat.numel())
    mats, off = [], 0
    for n, k in shapes:
        mats.append(flat[off:off + n * k].view(n, k))
        off += n * k
    elt = flat.element_size()
    lin = torch.nn.functional.linear
    ks = sorted({k for _, k in shapes})
    w_elems = sum(n * k for n, k in shapes)
    io_elems = sum(n + k for n, k in shapes)
    jobs = []
    from .kernels import matrices_str
    for i, m in enumerate(cfg["rows"]):
        xs = {k: torch.randn(m, k, device=pool.device).to(tdt) * 0.01 for k in ks}
        jobs.append({"job": "curve", "dtype": dt, "rows": m, "flops": 2.0 * m * w_elems,
                     "family": f"curve-{dt}", "required": i == 0, "shapes": matrices_str(shapes),
                     "bytes": float((w_elems + m * io_elems) * elt), "matrices": len(mats),
                     "weight_bytes": float(w_elems * elt),
                     "fn": (lambda xs=xs: [lin(xs[w.shape[1]], w) for w in mats])})
    return jobs


def _dispatch(torch, clock: Clock, calls: int, device: str) -> float:
    a = torch.zeros(1, device=device)
    b = torch.zeros(1, device=device)

    def loop():
        for _ in range(calls):
            torch.add(a, a, out=b)
    return clock.median(loop, 5) / calls


def _attention(torch, pool, tdt, dt: str, cfg: dict) -> list[dict]:
    sdpa = torch.nn.functional.scaled_dot_product_attention
    h, d, b = ATTN_HEADS, ATTN_HEAD_DIM, cfg["attn_batch"]
    flat = pool.view(tdt)
    elt = flat.element_size()
    jobs = []
    for L in cfg["attn_kv"]:
        n = b * h * L * d
        if 2 * n > flat.numel():
            continue
        k = flat[:n].view(b, h, L, d)
        v = flat[n:2 * n].view(b, h, L, d)
        q = torch.randn(b, h, 1, d, device=pool.device).to(tdt)
        jobs.append({"job": "attention", "kind": "decode", "batch": b, "length": L,
                     "family": "attn-decode", "dtype": dt,
                     "bytes": float((2 * n + 2 * b * h * d) * elt), "flops": 4.0 * b * h * L * d,
                     "fn": (lambda q=q, k=k, v=v: sdpa(q, k, v))})
    for s in cfg["attn_prefill"]:
        q, k, v = (torch.randn(1, h, s, d, device=pool.device).to(tdt) for _ in range(3))
        jobs.append({"job": "attention", "kind": "prefill", "batch": 1, "length": s,
                     "family": "attn-prefill", "dtype": dt,
                     "bytes": float(4 * h * s * d * elt),
                     "flops": 2.0 * h * s * (s + 1) / 2 * 2 * d,
                     "fn": (lambda q=q, k=k, v=v: sdpa(q, k, v, is_causal=True))})
    return jobs


def _fit(res: ProbeResult) -> None:
    dt = res.fit_dtype
    peak, bw = res.peaks_flops_s[dt], res.mem_bw_bytes_s
    pts = [g for g in res.gemm_curve if g["dtype"] == dt] + [s for s in res.square if s["dtype"] == dt]
    g = fit_gemm([p["rows"] for p in pts], [p["flops"] for p in pts], [p["bytes"] for p in pts],
                 [p["time_s"] for p in pts], peak, bw)
    res.gemm_fit = g
    dec = [a for a in res.attention if a["kind"] == "decode"]
    pre = [a for a in res.attention if a["kind"] == "prefill"]
    eff = {"bandwidth": round(g["bandwidth"], 4), "compute": round(g["compute"], 4),
           "gemm_half_rows": round(g["gemm_half_rows"], 2)}
    if dec:
        big = max(dec, key=lambda a: a["bytes"])
        eff["attention_bandwidth"] = round(float(np.clip(big["bytes"] / big["time_s"] / bw, 0.01, 1.0)), 4)
    if pre:
        best = max(a["flops"] / a["time_s"] for a in pre)
        eff["attention_compute"] = round(float(np.clip(best / peak, 0.01, 1.0)), 4)
    oh = res.overhead
    eff["launch_overhead_us"] = round(oh["launch_overhead_s"] * 1e6, 3)
    eff["step_overhead_us"] = round(oh["step_overhead_s"] * 1e6, 3)
    eff["prefill_overhead_us"] = round(oh["prefill_overhead_s"] * 1e6, 3)
    res.efficiency = eff
    res.gemm_fit = {**g, "peak_flops_s": peak, "mem_bw_bytes_s": bw, "points": len(pts)}


def compare_datasheet(res: ProbeResult, device_id: str | None) -> dict | None:
    """Datasheet fields of a catalog device beside the measured ones (None: no device)."""
    if not device_id:
        return None
    from ..specs.hardware import load_hardware
    hw = load_hardware(device_id)
    return {"id": hw.id, "name": hw.name, "mem_bw_bytes_s": hw.mem_bw_bytes_s,
            "peaks_flops_s": dict(hw.peak_flops), "memory_bytes": hw.memory_bytes,
            "cores": hw.sm_count, "family": hw.family}
