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
from typing import Callable

import numpy as np

from ..errors import InputError
from .fit import fit_gemm, fit_overhead, gemm_model_s
from .timing import Clock, check_device, check_threads, median, require_torch, torch_threads

DTYPES = ("bf16", "fp16", "fp32")

SIZES = {
    "quick": dict(pool_mb=384, squares=(1024, 2048), rows=(1, 4, 16, 64, 256), repeats=3,
                  dispatch_calls=300, attn_batch=2, attn_kv=(1024, 4096), attn_prefill=(512, 1024),
                  tiny_layers=(1, 2, 4), tiny_steps=16),
    "full": dict(pool_mb=1024, squares=(1024, 2048, 4096), rows=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                 repeats=5, dispatch_calls=2000, attn_batch=4, attn_kv=(512, 2048, 8192),
                 attn_prefill=(512, 1024, 2048), tiny_layers=(1, 2, 4, 8), tiny_steps=16),
}
ATTN_HEADS, ATTN_HEAD_DIM = 16, 128
_H, _KV, _F, _V = 2048, 512, 8192, 32000
WEIGHT_SET = [(_H, _H), (_KV, _H), (_KV, _H), (_H, _H), (_F, _H), (_F, _H), (_H, _F)] * 2 + [(_V, _H)]
TINY_PREFILL_TOKENS = 16


def tiny_config(layers: int) -> dict:
    """A Llama whose kernels do negligible work: what remains is framework overhead."""
    return {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": layers,
            "vocab_size": 256, "max_position_embeddings": 512, "tie_word_embeddings": False,
            "rms_norm_eps": 1e-5, "bos_token_id": 0, "eos_token_id": 1}


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
            if dt in self.peaks_flops_s:
                d[f] = round(self.peaks_flops_s[dt] / 1e12, 5)
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
        return repr(round(v, 6))
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
    return {"name": p.name, "vendor": "NVIDIA" if torch.version.cuda else "AMD", "family": fam,
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
def probe(device: str = "cpu", quick: bool = False, threads: int | None = None,
          dtype: str = "bf16", progress: Callable[[str], None] | None = None) -> ProbeResult:
    """Measure this device's ceilings and fit an efficiency block (module docstring).

    ``dtype``: the precision whose GEMM curve the efficiency block is fitted to (bench and
    analyze then should use the same). ``threads``: CPU threads (default: torch's).

    Every kernel is warmed up once, then the whole list is timed in ``repeats`` rounds
    (each kernel once per round) and each kernel's median is kept: a neighbour that
    slows a shared machine for a few seconds then spoils one sample of many kernels
    instead of all samples of one.
    """
    torch = require_torch()
    device = check_device(device)
    threads = check_threads(threads)
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    say = progress or (lambda s: None)
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
                          date=datetime.date.today().isoformat())
        pool = torch.empty(cfg["pool_mb"] * 1_000_000 // 4, dtype=torch.float32, device=device)
        pool.fill_(0.5)          # touch every page once; fp32 0.5 reads as 0.5/0 in 16 bits
        dtypes = ["fp32", "bf16"] + ([dtype] if dtype not in ("fp32", "bf16") else [])
        if not quick and "fp16" not in dtypes:
            dtypes.append("fp16")
        tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
        jobs = _stream(torch, pool, clock)
        for dt in dtypes:
            jobs += _squares(torch, tdt[dt], dt, cfg["squares"], device)
            if dt in ("fp32", "bf16", dtype):
                jobs += _decode_curve(torch, pool, tdt[dt], dt, cfg)
        jobs += _attention(torch, pool, tdt[dtype], dtype, cfg)
        say(f"{len(jobs)} kernels: stream, GEMMs ({', '.join(dtypes)}), attention; "
            f"{reps} rounds")
        for j in jobs:
            j["fn"]()
        samples: list[list[float]] = [[] for _ in jobs]
        for r in range(reps):
            for j, out in zip(jobs, samples):
                out.append(clock.once(j["fn"])[0])
            say(f"round {r + 1}/{reps} done")
        for j, out in zip(jobs, samples):
            j.pop("fn")
            j["time_s"] = median(out)
            kind = j.pop("job")
            if kind == "stream":
                res.stream_bytes_s[j["name"]] = j["bytes"] / j["time_s"]
            elif kind == "square":
                j["flops_s"] = j["flops"] / j["time_s"]
                res.square.append(j)
            elif kind == "curve":
                res.weight_set_bytes[j["dtype"]] = j.pop("weight_bytes")
                res.gemm_curve.append(j)
            else:
                res.attention.append(j)
        del jobs, pool
        say("dispatch and framework overhead (tiny transformers model)")
        res.dispatch_s = _dispatch(torch, clock, cfg["dispatch_calls"], device)
        res.overhead = _framework(cfg, dtype, device, reps)
    _fit(res)
    return res


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
    return jobs


def _squares(torch, tdt, dt: str, sizes, device: str) -> list[dict]:
    jobs = []
    for s in sizes:
        a = torch.randn(s, s, device=device).to(tdt)
        b = torch.randn(s, s, device=device).to(tdt)
        jobs.append({"job": "square", "dtype": dt, "size": s, "rows": s, "flops": 2.0 * s ** 3,
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
    for m in cfg["rows"]:
        xs = {k: torch.randn(m, k, device=pool.device).to(tdt) * 0.01 for k in ks}
        jobs.append({"job": "curve", "dtype": dt, "rows": m, "flops": 2.0 * m * w_elems,
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


def _framework(cfg: dict, dtype: str, device: str, reps: int) -> dict:
    """Per-layer and per-step time of tiny models run like ``bench`` runs models.

    The models with 1..8 layers are timed in turns (one generation each per round) so a
    slow spell of a shared machine does not bend the fitted line.
    """
    require_torch(transformers=True)
    from ..bench.model import build_model
    from ..bench.run import Generator, Timings
    from ..graph import build_ops
    from ..specs.model import from_hf_config
    from ..specs.precision import Precision
    steps = cfg["tiny_steps"]
    layers = list(cfg["tiny_layers"])
    gens = [Generator(build_model(tiny_config(n), dtype, device), 1, TINY_PREFILL_TOKENS,
                      steps + 1, device) for n in layers]
    timings = [Timings() for _ in gens]
    for g in gens:
        g.generation(steps=4)
        g.generation(steps=4)
    for _ in range(max(reps, 7)):       # ~1 ms steps: cheap
        for g, t in zip(gens, timings):
            pre, times = g.generation()
            t.prefill_s.append(pre)
            t.step_s.append(times)
            t.steps = len(times)
    dec = [t.tpot_s for t in timings]
    pre = [t.ttft_s for t in timings]
    launches = [sum(o.count for o in build_ops(from_hf_config(tiny_config(n)), Precision(), 1, 1, 2))
                for n in (1, 2)]
    per_layer = launches[1] - launches[0]
    fit = fit_overhead(layers, dec, pre, per_layer, launches[0] - per_layer)
    fit.update(layers=layers, decode_s=dec, prefill_s=pre, engine_launches_per_layer=per_layer,
               engine_fixed_launches=launches[0] - per_layer)
    return fit


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
                     "bytes": float((2 * n + 2 * b * h * d) * elt), "flops": 4.0 * b * h * L * d,
                     "fn": (lambda q=q, k=k, v=v: sdpa(q, k, v))})
    for s in cfg["attn_prefill"]:
        q, k, v = (torch.randn(1, h, s, d, device=pool.device).to(tdt) for _ in range(3))
        jobs.append({"job": "attention", "kind": "prefill", "batch": 1, "length": s,
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
