"""Score the simulator on the disaggregated rows of the H200 concurrency CSV.

``python scripts/disagg_accuracy.py [CSV]``: every disagg row whose pools the simulator
can run (serving/disagg.py; attention-DP pools are skipped) simulated once with the
engines' current fitted fixed costs, then the mean absolute percentage error of TTFT,
TPOT and throughput (c x OSL / (TTFT + TPOT x (OSL - 1))), as engine_fit.mape computes
it: all rows, by engine, and split by whether the row gives its worker counts (rows that
leave them empty are simulated as 1P1D with the engine's max batch).
"""

from __future__ import annotations

import sys
from collections import Counter

from llmroofline.serving import engine_fit as ef
from llmroofline.serving.measured import read_concurrency_csv, simulate_run

CSV = "/work/shared/reference/measured_modern/serving_h200_concurrency.csv"


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else CSV
    ok, skipped = read_concurrency_csv(path, disagg=True)
    runs = [r for r in ok if r.mode == "disagg"]
    print(f"{len(runs)} disagg rows simulated; skipped:",
          dict(Counter(w for r, w in skipped if r.mode == "disagg")))
    rows = []
    for r in runs:
        s = simulate_run(r)
        rows.append({"backend": r.backend, "given": r.decode_pool[5] is not None,
                     "ttft_ms": s["ttft_ms"], "tpot_ms": s["tpot_ms"], "tok_s": s["tok_s"],
                     "measured_ttft_ms": r.ttft_ms, "measured_tpot_ms": r.tpot_ms,
                     "measured_tok_s": r.tok_s, "c": r.concurrency})
    groups = {"all": ef.mape(rows)}
    groups.update({f"engine {k}": v for k, v in ef.mape(rows, lambda x: x["backend"]).items()})
    groups.update({("workers given" if k else "workers not given (1P1D assumed)"): v
                   for k, v in ef.mape(rows, lambda x: x["given"]).items()})
    groups.update({f"{k[0]} {'given' if k[1] else 'not given'}": v for k, v in
                   ef.mape(rows, lambda x: (x["backend"], x["given"])).items()})
    groups.update({f"not given, {k}": v for k, v in ef.mape(
        [x for x in rows if not x["given"]], lambda x: ef.bucket(x["c"])).items()})
    print("| rows | n | TTFT | TPOT | throughput |\n|---|---|---|---|---|")
    for g, e in groups.items():
        print(f"| {g} | {e['n']} | {100 * e['ttft_ms']:.1f} % | {100 * e['tpot_ms']:.1f} % | "
              f"{100 * e['tok_s']:.1f} % |")


if __name__ == "__main__":
    main()
