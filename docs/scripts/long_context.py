"""Chart and table of docs/long_context.md: KV + recurrent-state memory and decode step time
at 8k, 128k and 1M tokens of context for a hybrid, a sparse and a dense model of similar size.

Run from the repository root (needs matplotlib):

    python docs/scripts/long_context.py

Writes docs/img/long_context.png and prints the table the page quotes. Every number comes
from the public Python API with the ideal profile (datasheet peaks) on 8 x H200 (TP 8),
W8A8 with an FP8 KV cache, batch 1, so the page is reproducible whatever the calibrated
profile becomes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from llmroofline import phases  # noqa: E402
from llmroofline.memory import kv_cache_bytes_per_seq, state_bytes_per_seq  # noqa: E402
from llmroofline.specs.catalog import load_model  # noqa: E402
from llmroofline.specs.model import param_count  # noqa: E402
from llmroofline.specs.precision import parse_quant  # noqa: E402

MODELS = {
    "Qwen/Qwen3.5-397B-A17B": "hybrid: Qwen3.5-397B-A17B (Gated DeltaNet, 1 in 4 full)",
    "deepseek-ai/DeepSeek-V3.2": "sparse: DeepSeek-V3.2 (MLA + DSA top-2048)",
    "meta-llama/Llama-3.1-405B": "dense: Llama-3.1-405B (GQA, all full)",
}
STYLE = {"Qwen/Qwen3.5-397B-A17B": dict(color="tab:green", marker="o"),
         "deepseek-ai/DeepSeek-V3.2": dict(color="tab:blue", marker="s"),
         "meta-llama/Llama-3.1-405B": dict(color="tab:red", marker="^")}
CONTEXTS = (8192, 131072, 1048576)
GRID = np.unique(np.geomspace(4096, 1048576, 25).astype(int))
QUANT = "fp8,kv-fp8"
HW, TP = "h200", 8
OUT = Path(__file__).resolve().parents[1] / "img"


def measure(model_id: str, contexts) -> dict:
    m = load_model(model_id)
    prec = parse_quant(QUANT)
    ctx = np.asarray(contexts, dtype=float)
    kv = kv_cache_bytes_per_seq(m, prec, ctx)            # whole model (1 device view)
    state = state_bytes_per_seq(m) * np.ones_like(ctx)
    # one decode step at context L: input L - 1, output 2 (TPOT = the one decode step)
    a = phases.analyze(m, HW, 1, (ctx - 1).astype(int), 2, quant=QUANT, tp=TP,
                       profile="ideal")
    attn = np.zeros_like(ctx)
    for o in a.decode.ops:
        if o.kind == "attention":
            attn = attn + np.asarray(o.time_s, dtype=float)
    return {"params": param_count(m), "kv": kv, "state": state,
            "tpot": np.asarray(a.tpot_s, dtype=float), "attn": attn}


def main() -> None:
    rows = {mid: measure(mid, CONTEXTS) for mid in MODELS}
    print(f"{'model':28s} {'params':>8s} " + " ".join(
        f"{'KV+state ' + str(c // 1024) + 'k':>16s} {'step ' + str(c // 1024) + 'k':>10s}"
        for c in CONTEXTS))
    for mid, r in rows.items():
        cells = " ".join(f"{(r['kv'][i] + r['state'][i]) / 1e9:>13.2f} GB {r['tpot'][i] * 1e3:>7.2f} ms"
                         for i in range(len(CONTEXTS)))
        print(f"{mid.split('/')[1]:28s} {r['params'] / 1e9:>7.0f}B {cells}")
        print(f"{'':28s} {'':8s} state {r['state'][0] / 1e6:.1f} MB; attention share of the step "
              + ", ".join(f"{100 * r['attn'][i] / r['tpot'][i]:.0f} %" for i in range(len(CONTEXTS))))
    curves = {mid: measure(mid, GRID) for mid in MODELS}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for mid, c in curves.items():
        st = STYLE[mid]
        ax1.plot(GRID, (c["kv"] + c["state"]) / 1e9, label=MODELS[mid], color=st["color"])
        ax2.plot(GRID, c["tpot"] * 1e3, color=st["color"])
        r = rows[mid]
        ax1.scatter(CONTEXTS, (r["kv"] + r["state"]) / 1e9, color=st["color"], marker=st["marker"])
        ax2.scatter(CONTEXTS, r["tpot"] * 1e3, color=st["color"], marker=st["marker"])
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xticks(CONTEXTS, ["8k", "128k", "1M"])
        ax.grid(alpha=0.3)
        ax.set_xlabel("context tokens (one sequence)")
    ax1.set_yscale("log")
    ax1.set_ylabel("KV cache + recurrent state, GB (FP8 KV, whole model)")
    ax2.set_ylabel("decode step, ms (8 x H200 TP 8, W8A8, ideal)")
    ax1.legend(fontsize=8, loc="upper left")
    fig.suptitle("Long context: memory and decode time per sequence")
    fig.tight_layout()
    OUT.mkdir(exist_ok=True)
    fig.savefig(OUT / "long_context.png", dpi=110)
    print(f"wrote {OUT / 'long_context.png'}")


if __name__ == "__main__":
    main()
