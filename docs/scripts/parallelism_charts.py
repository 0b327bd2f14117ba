"""Charts of docs/parallelism.md: Llama-2-70B on 8 x H100 SXM (NVLink) vs 8 x L40S (PCIe).

Run from the repository root (needs matplotlib):

    python docs/scripts/parallelism_charts.py

Writes docs/img/parallelism_latency.png, parallelism_comm_share.png and
parallelism_allreduce.png, and prints the numbers the page quotes. Every number comes from
the public Python API with the ideal profile (datasheet peaks), so the page is
reproducible whatever the calibrated default profile becomes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import llmroofline as lr  # noqa: E402
from llmroofline.cost import collective_time, link_for  # noqa: E402
from llmroofline.parallel import Layout  # noqa: E402

MODEL = "meta-llama/Llama-2-70b-hf"
DEVICES = {"h100-sxm": "8 x H100 SXM (NVLink)", "l40s": "8 x L40S (PCIe)"}
STYLE = {"h100-sxm": dict(color="tab:green", ls="-"), "l40s": dict(color="tab:purple", ls="--")}
TPS = (1, 2, 4, 8)
BATCHES = (1, 64)
INPUT, OUTPUT = 1024, 256
OUT = Path(__file__).resolve().parents[1] / "img"


def comm_s(phase) -> float:
    return sum(float(o.time_s) for o in phase.ops if o.kind == "communication")


def sweep() -> dict:
    """(device, batch, tp) -> TTFT, TPOT, communication shares, fits."""
    res = {}
    for hw in DEVICES:
        for b in BATCHES:
            for tp in TPS:
                a = lr.analyze(MODEL, hw, batch=b, input_len=INPUT, output_len=OUTPUT, tp=tp,
                               profile="ideal")
                res[hw, b, tp] = dict(
                    ttft=float(a.ttft_s), tpot=float(a.tpot_s),
                    comm_decode=comm_s(a.decode) / float(a.decode.time_s),
                    comm_prefill=comm_s(a.prefill) / float(a.prefill.time_s),
                    fits=bool(a.memory.fits), mem_gb=float(a.memory.total_bytes) / 1e9)
    return res


def latency_chart(res: dict, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4), sharex=True)
    for col, b in enumerate(BATCHES):
        for row, (key, label) in enumerate((("tpot", "TPOT (ms)"), ("ttft", "TTFT (ms)"))):
            ax = axes[row, col]
            for hw, name in DEVICES.items():
                y = np.array([res[hw, b, tp][key] * 1e3 for tp in TPS])
                fits = np.array([res[hw, b, tp]["fits"] for tp in TPS])
                ax.plot(TPS, y, marker="none", label=name, **STYLE[hw])
                ax.plot(np.array(TPS)[fits], y[fits], "o", color=STYLE[hw]["color"])
                ax.plot(np.array(TPS)[~fits], y[~fits], "o", mfc="white", color=STYLE[hw]["color"])
                ax.plot(TPS, y[0] / np.array(TPS), ":", color=STYLE[hw]["color"], lw=1)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(TPS, [str(t) for t in TPS])
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{label.split()[0]}, batch {b}", fontsize=10)
            if col == 0:
                ax.set_ylabel(label)
            if row == 1:
                ax.set_xlabel("tensor-parallel degree")
    axes[0, 0].plot([], [], ":", color="gray", lw=1, label="perfect scaling from TP=1")
    axes[0, 0].plot([], [], "o", mfc="white", color="gray", label="does not fit in memory")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"Llama-2-70B FP16, input {INPUT}, output {OUTPUT} (ideal roofline)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def comm_share_chart(res: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, (key, title) in zip(axes, (("comm_decode", "decode step"), ("comm_prefill", "prefill"))):
        for hw, name in DEVICES.items():
            for b, mk in zip(BATCHES, ("o", "s")):
                y = [100 * res[hw, b, tp][key] for tp in TPS]
                ax.plot(TPS, y, marker=mk, label=f"{name}, batch {b}", **STYLE[hw])
        ax.set_xscale("log", base=2)
        ax.set_xticks(TPS, [str(t) for t in TPS])
        ax.set_xlabel("tensor-parallel degree")
        ax.set_title(f"share of {title} time in all-reduce / all-gather", fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("% of time")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def allreduce_chart(path: Path) -> dict:
    """All-reduce time over 8 GPUs vs message size, per algorithm and link."""
    sizes = np.logspace(3, 9, 200)
    marks = {"decode, batch 1": 1 * 8192 * 2, "decode, batch 64": 64 * 8192 * 2,
             "prefill, 1 x 1024 tokens": 1024 * 8192 * 2}
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    picks = {}
    for ax, hw in zip(axes, DEVICES):
        spec = lr.load_hardware(hw)
        link = link_for(spec, 8, Layout(tp=8))
        for algo, ls in (("oneshot", "-"), ("twoshot", "--"), ("ring", "-."), ("tree", ":")):
            # one-shot / two-shot need every GPU pair at full bandwidth at once (NVSwitch)
            usable = link.all_to_all or algo in ("ring", "tree")
            ax.plot(sizes, collective_time("allreduce", sizes, 8, link, algo) * 1e6, ls=ls,
                    alpha=1 if usable else 0.3, label=algo if usable else f"{algo} (needs a switch)")
        auto = collective_time("allreduce", sizes, 8, link, "auto") * 1e6
        ax.plot(sizes, auto, color="black", lw=3, alpha=0.25, label="auto (what the tool uses)")
        for name, s in marks.items():
            t = float(collective_time("allreduce", s, 8, link, "auto")) * 1e6
            picks[hw, name] = t
            ax.axvline(s, color="gray", lw=0.8)
            ax.text(s * 1.15, 1.2, name, rotation=90, fontsize=7, va="bottom", color="gray")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("message per GPU (bytes)")
        ax.set_title(f"{DEVICES[hw]}: {link.bytes_s / 1e9:g} GB/s per direction, "
                     f"{link.latency_s * 1e6:g} us per hop", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("all-reduce time over 8 GPUs (us)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return picks


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    res = sweep()
    latency_chart(res, OUT / "parallelism_latency.png")
    comm_share_chart(res, OUT / "parallelism_comm_share.png")
    picks = allreduce_chart(OUT / "parallelism_allreduce.png")
    print(f"{'device':9} {'batch':>5} {'tp':>3} {'TTFT ms':>9} {'TPOT ms':>8} "
          f"{'comm dec':>8} {'comm pre':>8} {'GB/dev':>7} fits")
    for (hw, b, tp), r in res.items():
        print(f"{hw:9} {b:5d} {tp:3d} {r['ttft'] * 1e3:9.2f} {r['tpot'] * 1e3:8.3f} "
              f"{100 * r['comm_decode']:7.1f}% {100 * r['comm_prefill']:7.1f}% "
              f"{r['mem_gb']:7.1f} {'yes' if r['fits'] else 'no'}")
    for (hw, name), t in picks.items():
        print(f"all-reduce over 8 x {hw}, {name}: {t:.2f} us")
    for f in sorted(OUT.glob("parallelism_*.png")):
        print(f"wrote {f} ({f.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
