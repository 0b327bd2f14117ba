"""Kernel sweeps of ``probe`` beyond the CPU set: GEMM M-sweeps per dtype (fp8 through
``torch._scaled_mm``), SDPA at several KV lengths and GQA groups. Each job is a dict with
the kernel-table fields (``kernels.py``), its FLOPs and bytes, and ``fn``: the callable
the probe times. The same code runs on CPU with small shapes (tests) and on CUDA with
model-sized ones (``SWEEP``).

Weights of one GEMM shape are replicated into ``copies`` matrices that together exceed
``cache_bytes`` (4x the last-level cache, at least 64 MB) and one timed call runs all of
them, so a decode-shaped GEMM streams its weights from DRAM as in a model's step instead
of hitting a warm L2 (an H100's 50 MB L2 holds a whole 4096 x 4096 bf16 matrix).
"""

from __future__ import annotations

import math

# (N, K) of one layer of an 8B-class model (Llama-3.1-8B: fused QKV, O, fused gate/up,
# down) and its vocabulary projection; M token rows swept over DECODE_M; squares M=N=K.
SWEEP = {
    "cuda": dict(shapes=[(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336)],
                 rows=(1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
                 squares=(1024, 2048, 4096, 8192), attn_batch=8, attn_heads=32,
                 attn_groups=(1, 4, 8), attn_kv=(1024, 4096, 16384), attn_prefill=(1024, 4096),
                 head_dim=128),
    "cpu": dict(shapes=[(512, 256), (256, 512)], rows=(1, 16, 64), squares=(128, 256),
                attn_batch=1, attn_heads=4, attn_groups=(1, 4), attn_kv=(256, 1024),
                attn_prefill=(128,), head_dim=32),
}


def fp8_support(torch, device: str) -> tuple[bool, str]:
    """(usable, reason): fp8 GEMMs need CUDA, compute capability 8.9+ and torch._scaled_mm."""
    if not str(device).startswith("cuda"):
        return False, "fp8 GEMMs skipped: torch._scaled_mm runs on CUDA only"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        return False, f"fp8 GEMMs skipped: compute capability {major}.{minor} < 8.9 (no fp8 tensor cores)"
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return False, f"fp8 GEMMs skipped: torch {torch.__version__} has no _scaled_mm"
    try:
        a = torch.zeros(16, 32, device=device).to(torch.float8_e4m3fn)
        b = torch.zeros(16, 32, device=device).to(torch.float8_e4m3fn).t()
        one = torch.tensor(1.0, device=device)
        torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    except Exception as e:  # noqa: BLE001 - any failure means: not usable here
        return False, f"fp8 GEMMs skipped: _scaled_mm failed ({type(e).__name__}: {str(e)[:80]})"
    return True, ""


def gemm_jobs(torch, tdt, dt: str, device: str, cfg: dict, cache_bytes: float) -> list[dict]:
    """M-sweep over the decode shapes and square GEMMs of one dtype (fp8: ``_scaled_mm``).

    FLOPs ``2 M N K`` and bytes ``N K e + M (N + K) e`` per matrix (``e`` = bytes per
    element of the inputs; the fp8 output is bf16, counted at 1 byte like the inputs).
    """
    fp8 = dt == "fp8"
    elt = 1 if fp8 else torch.empty((), dtype=tdt).element_size()
    one = torch.tensor(1.0, device=device)
    jobs = []

    def make(n, k, copies):
        ws = [(torch.rand(n, k, device=device) - 0.5).to(tdt) for _ in range(copies)]
        return [w.t() for w in ws] if fp8 else ws          # _scaled_mm wants b column-major

    def call(x, ws):
        if fp8:
            return [torch._scaled_mm(x, w, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
                    for w in ws]
        return [torch.nn.functional.linear(x, w) for w in ws]

    for n, k in cfg["shapes"]:
        copies = max(1, math.ceil(cache_bytes / (n * k * elt)))
        ws = make(n, k, copies)
        for m in cfg["rows"]:
            if fp8 and m % 16:
                continue                     # _scaled_mm needs M divisible by 16
            x = (torch.rand(m, k, device=device) - 0.5).to(tdt)
            jobs.append(_gemm_row(dt, m, n, k, copies, elt, lambda x=x, ws=ws: call(x, ws)))
    for s in cfg["squares"]:
        a = (torch.rand(s, s, device=device) - 0.5).to(tdt)
        ws = make(s, s, 1)
        jobs.append(_gemm_row(dt, s, s, s, 1, elt, lambda a=a, ws=ws: call(a, ws)))
    return jobs


def _gemm_row(dt, m, n, k, copies, elt, fn) -> dict:
    return {"job": "kernel", "family": f"gemm-{dt}-{n}x{k}", "op": "gemm", "dtype": dt,
            "m": m, "n": n, "k": k, "matrices": f"{n}x{k}*{copies}",
            "flops": 2.0 * m * n * k * copies, "bytes": float(copies * (n * k + m * (n + k)) * elt),
            "fn": fn}


def attention_jobs(torch, tdt, dt: str, device: str, cfg: dict) -> list[dict]:
    """SDPA decode (one query per sequence against ``kv_len`` keys) and causal prefill at
    each GQA group ``heads / kv_heads``. Bytes: K and V read once per KV head plus q and o;
    FLOPs ``4 B H pairs d`` with pairs = L (decode) or S (S + 1) / 2 (causal prefill)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    b, h, d = cfg["attn_batch"], cfg["attn_heads"], cfg["head_dim"]
    elt = torch.empty((), dtype=tdt).element_size()
    jobs = []
    for g in cfg["attn_groups"]:
        hk = max(1, h // g)
        gqa = hk != h
        for L in cfg["attn_kv"]:
            q = torch.randn(b, h, 1, d, device=device).to(tdt)
            k = torch.randn(b, hk, L, d, device=device).to(tdt)
            v = torch.randn(b, hk, L, d, device=device).to(tdt)
            jobs.append({"job": "kernel", "family": f"attn-decode-g{g}", "op": "attn_decode",
                         "dtype": dt, "m": b, "heads": h, "kv_heads": hk, "head_dim": d,
                         "kv_len": L, "flops": 4.0 * b * h * L * d,
                         "bytes": float((2 * b * hk * L * d + 2 * b * h * d) * elt),
                         "fn": (lambda q=q, k=k, v=v, gqa=gqa: sdpa(q, k, v, enable_gqa=gqa))})
        for s in cfg["attn_prefill"]:
            q = torch.randn(1, h, s, d, device=device).to(tdt)
            k = torch.randn(1, hk, s, d, device=device).to(tdt)
            v = torch.randn(1, hk, s, d, device=device).to(tdt)
            jobs.append({"job": "kernel", "family": f"attn-prefill-g{g}", "op": "attn_prefill",
                         "dtype": dt, "m": 1, "heads": h, "kv_heads": hk, "head_dim": d,
                         "kv_len": s, "flops": 4.0 * h * s * (s + 1) / 2 * d,
                         "bytes": float((2 * h * s * d + 2 * hk * s * d) * elt),
                         "fn": (lambda q=q, k=k, v=v, gqa=gqa: sdpa(q, k, v, is_causal=True,
                                                                     enable_gqa=gqa))})
    return jobs
