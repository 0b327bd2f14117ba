"""Refit the shipped efficiency profiles from the shipped measurements.

    python scripts/refit_profiles.py [OUT_DIR]      (default: src/llmroofline/data/profiles)

default: every static/concurrent row; trtllm-0.8 / lmdeploy-0.1: one engine's rows each.
Prints the in-sample summary of each fit. Deterministic (scipy least_squares from fixed
starting points); takes a few minutes on two cores.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from llmroofline import fit, validate
from llmroofline.specs.profile import profile_to_toml

CSV = "data/measured/calibration.csv"
PROFILES = {
    "default": (None, f"{CSV} (TensorRT-LLM v0.8.0, LMDeploy v0.1.0a1; {{n}} rows)"),
    "trtllm-0.8": ("trtllm_v0.8.0", f"{CSV} rows of source trtllm_v0.8.0 ({{n}} rows)"),
    "lmdeploy-0.1": ("lmdeploy_v0.1.0a1_a100", f"{CSV} rows of source lmdeploy_v0.1.0a1_a100 ({{n}} rows)"),
}


def main(out_dir: Path, names: list[str]) -> None:
    path = resources.files("llmroofline") / "data" / "measured" / "calibration.csv"
    rows = validate.read_measurements(str(path))
    for name in names:
        source, text = PROFILES[name]
        rs = [r for r in rows if source is None or r.source_id == source]
        prof, _ = fit.calibrate(rs, fit.DEFAULT_FIT, name=name, source=text.format(n=len(rs)))
        (out_dir / f"{name}.toml").write_text(profile_to_toml(prof))
        s = validate.predict_rows(rs, prof).summary()["overall"]
        print(name, {k: f"{v['median_ape']:.1%}/{v['p90_ape']:.1%}" for k, v in s.items()})


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("src/llmroofline/data/profiles")
    main(out, sys.argv[2:] or list(PROFILES))
