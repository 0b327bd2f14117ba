"""Out-of-sample check of the joint (static + serving) fit: leave one model's serving rows out.

    python scripts/serving_holdout.py MODEL [MODEL ...]

For each MODEL, the default profile is refitted as ``scripts/refit_profiles.py`` fits it
(every static row, plus the TensorRT-LLM v0.10 in-flight-batching rows of the other
models, ``fit_serving`` with the same evaluation cap), and the held-out model's serving
rows are predicted with that fit. About 20 minutes per model on one core; run several
in parallel processes on more cores. Prints one line per held-out row: model, TP,
input/output, measured and predicted tok/s, error.
"""

from __future__ import annotations

import sys

from llmroofline import fit, validate

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from refit_profiles import SERVING_NFEV  # noqa: E402  (same cap as the shipped fit)


def holdout(model: str) -> list[tuple]:
    rows = validate.read_measurements(str(validate.shipped_measurements()))
    serving = validate.read_measurements(str(validate.shipped_serving_measurements()))
    test = [r for r in serving if r.model == model]
    if not test:
        raise SystemExit(f"no serving rows of {model!r}; models: "
                         + ", ".join(sorted({r.model for r in serving})))
    train = rows + [r for r in serving if r.model != model]
    prof, _ = fit.calibrate(train, fit.DEFAULT_FIT, name=f"without {model}", fit_serving=True,
                            serving_max_nfev=SERVING_NFEV, coverage=fit.shipped_coverage())
    v = validate.predict_rows(test, prof)
    return [(model, p.row.tp, p.row.input_len, p.row.output_len, p.measured, p.predicted,
             p.error) for p in v.predictions]


if __name__ == "__main__":
    for m in sys.argv[1:] or ["meta-llama/Meta-Llama-3-8B"]:
        for model, tp, i, o, meas, pred, err in holdout(m):
            print(f"{model}  TP {tp}  {i}/{o}  measured {meas:,.0f}  predicted {pred:,.0f}  "
                  f"{err:+.1%}", flush=True)
