"""Refit the shipped engines' efficiency entries from the shipped measurements.

    python scripts/refit_profiles.py [OUT_DIR] [NAME ...]   (default: src/llmroofline/data/engines)

Each engine file keeps its own tables (batching, KV-memory rule, runtime, coverage) and
gets the refitted [provenance], [fallback] and [families.*] tables.

default: every static/concurrent row, plus the TensorRT-LLM v0.10 in-flight-batching rows
(serving_calibration.csv) in the entries of their device (A100, 16-bit), each predicted by
the offline serving simulation; trtllm-0.8 / lmdeploy-0.1: one engine's static rows each.
Prints the in-sample summary of each fit. Deterministic (scipy least_squares from fixed
starting points); the default profile takes about 20 minutes (each serving row is a whole
simulation per evaluation), the engine profiles a minute each.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmroofline import fit, validate
from llmroofline.specs.engine import replace_efficiency_text

SERVING_NFEV = 8    # evaluations of the joint fit (each simulates all 36 serving rows)
# name -> (source_id of the rows to fit, None: all of them and the serving rows; provenance)
PROFILES = {
    "default": (None, "data/measured/calibration.csv (TensorRT-LLM v0.8.0, LMDeploy v0.1.0a1) "
                      "and data/measured/serving_calibration.csv (TensorRT-LLM v0.10.0 "
                      "in-flight batching, fitted in the A100 entries); {n} rows"),
    "trtllm-0.8": ("trtllm_v0.8.0", "data/measured/calibration.csv rows of source "
                                    "trtllm_v0.8.0 ({n} rows)"),
    "lmdeploy-0.1": ("lmdeploy_v0.1.0a1_a100", "data/measured/calibration.csv rows of source "
                                               "lmdeploy_v0.1.0a1_a100 ({n} rows)"),
}


def main(out_dir: Path, names: list[str]) -> None:
    rows = validate.read_measurements(str(validate.shipped_measurements()))
    serving = validate.read_measurements(str(validate.shipped_serving_measurements()))
    for name in names:
        source, text = PROFILES[name]
        rs = [r for r in rows if source is None or r.source_id == source]
        if source is None:
            rs = rs + serving
        prof, _ = fit.calibrate(rs, fit.DEFAULT_FIT, name=name, source=text.format(n=len(rs)),
                                fit_serving=source is None, serving_max_nfev=SERVING_NFEV,
                                coverage=fit.shipped_coverage(name))
        shipped = Path(__file__).parents[1] / "src/llmroofline/data/engines" / f"{name}.toml"
        (out_dir / f"{name}.toml").write_text(replace_efficiency_text(shipped.read_text(), prof))
        s = validate.predict_rows(rs, prof).summary()["overall"]
        print(name, {k: f"{v['median_ape']:.1%}/{v['p90_ape']:.1%}" for k, v in s.items()})


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("src/llmroofline/data/engines")
    main(out, sys.argv[2:] or list(PROFILES))
