"""TensorRT-LLM 0.11-0.17 offline max-throughput runs: reading them and simulating them.

The CSV is ``shared/reference/measured_modern/trtllm_max_throughput_v0.11-v0.17.csv``: the
schema of ``validate``'s measurement CSV (``mode = max_throughput``: ``batch`` requests of
``input_len`` / ``output_len`` tokens queued at once, the measured total output tokens/s of
the GPU group), with the engine build per row where the release printed it (``max_batch``,
``max_tokens``, ``kv_fraction``).

:func:`read_offline_csv` parses it with :func:`validate.read_measurements` (a row whose
columns cannot be read is one :class:`InputError` naming the row and the column) and sets
aside, with the reason, the rows the catalogs cannot price: a weight / activation / KV
format that is not known, a model or device that is not in the catalogs, a row that is not
a max-throughput run, pipeline stages. :func:`simulate_offline` runs each remaining row
through the serving simulator as the benchmark ran it: all requests at t = 0 under the
scheduler of engine ``trtllm-0.1x`` (guaranteed-no-evict: each request's prompt and output
KV reserved at admission, so nothing is preempted; chunked context; the row's max batch,
tokens per iteration and KV fraction where given) and the kernels of engine ``default``.
Predicted throughput = sum of output tokens / time to drain every request (makespan).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError
from ..validate import DTYPE_BITS, Prediction, Row, read_measurements, summarize

OFFLINE_ENGINE = "trtllm-0.1x"
# The 0.11-0.17 builds keep the KV of the whole context (max_attention_window defaults to
# the longest sequence), so a sliding-window checkpoint (Mistral-7B, 4096) attends over
# every token: with the window its 20000/2000 rows come out twice as fast as measured.
FULL_ATTENTION = True
_RELEASE = re.compile(r"trtllm_v(\d+\.\d+)")


def release_of(row: Row) -> str:
    """The TensorRT-LLM release of a row (``0.14`` from ``trtllm_v0.14.0_triton_serving``),
    else its ``source_id``."""
    m = _RELEASE.match(row.source_id)
    return m.group(1) if m else row.source_id


def is_offline_csv(path: str | Path) -> bool:
    """Whether a measurement CSV holds only TensorRT-LLM 0.11-0.17 max-throughput rows
    (``mode`` max_throughput, ``source_id`` trtllm_v0.11 ... trtllm_v0.17): the rows
    ``validate`` simulates under engine ``trtllm-0.1x``."""
    import csv
    p = Path(path)
    if not p.is_file():
        return False
    with p.open(newline="") as f:
        recs = list(csv.DictReader(f))
    def ours(rec: dict) -> bool:
        m = _RELEASE.match(rec.get("source_id") or "")
        return (bool(m) and (rec.get("mode") or "").strip().lower() == "max_throughput"
                and 11 <= int(m.group(1).split(".")[1]) <= 17 and m.group(1).startswith("0."))
    return bool(recs) and all(ours(r) for r in recs)


def _catalog_problem(row: Row) -> str | None:
    from ..specs.catalog import load_model
    from ..specs.hardware import load_hardware
    if row.mode != "max_throughput":
        return f"mode {row.mode}: only max_throughput rows are offline runs"
    if row.pp != 1:
        return f"pp {row.pp}: the offline simulation has no pipeline stages"
    if "throughput_tok_s" not in row.measured:
        return "no throughput_tok_s measured"
    for what, load, name in (("model", load_model, row.model), ("device", load_hardware, row.hardware)):
        try:
            load(name)
        except InputError as e:
            return f"{what} not in the catalog: {e}"
    return None


def read_offline_csv(path: str | Path) -> tuple[list[Row], list[tuple[str, str]]]:
    """(rows to simulate, [(row id, why it is set aside)]) of an offline CSV."""
    skipped: list[tuple[str, str]] = []
    rows = read_measurements(path, skipped=skipped)
    ok = []
    for r in rows:
        why = _catalog_problem(r)
        (skipped.append((r.id, why)) if why else ok.append(r))
    return ok, skipped


def skip_counts(skipped: list[tuple[str, str]]) -> dict[str, int]:
    """Set-aside rows counted by the kind of reason (the text before the first ':')."""
    out: dict[str, int] = {}
    for _, why in skipped:
        k = why.split(":")[0]
        out[k] = out.get(k, 0) + 1
    return out


def row_config(row: Row, engine=OFFLINE_ENGINE):
    """The SchedulerConfig a row ran under: the engine's (``trtllm-0.1x``) with the row's
    ``max_batch`` / ``max_tokens`` / ``kv_fraction`` / ``runtime_gb`` where given. A build
    whose token budget is below its batch (not in the data) keeps max_tokens = max_batch,
    the least that lets every running request decode each iteration."""
    from ..specs.engine import load_engine
    from .config import scheduler_config
    base = scheduler_config(load_engine(engine))
    given = dict(row.setup)
    batch = given.get("max_batch", base.max_batch)
    given["max_tokens"] = max(given.get("max_tokens", base.max_tokens), batch)
    return replace(base, **given)


@dataclass(frozen=True)
class OfflineResult:
    predictions: list[Prediction]
    skipped: list[tuple[str, str]]
    seconds: list[float]          # wall time per simulated row (cost table + simulation)
    engine: str

    def summary(self) -> dict:
        """validate.summarize's groups plus ``by_release`` and ``by_dtype`` (weights)."""
        out = summarize(self.predictions)
        for name, key in (("by_release", lambda p: release_of(p.row)),
                          ("by_dtype", lambda p: p.row.weight_dtype)):
            groups: dict[str, list[Prediction]] = {}
            for p in self.predictions:
                groups.setdefault(key(p), []).append(p)
            out[name] = {g: summarize(ps)["overall"] for g, ps in sorted(groups.items())}
        return out


def full_attention_model(name: str):
    """The catalog model with every sliding window removed (FULL_ATTENTION)."""
    from ..specs.catalog import load_model
    m = load_model(name)
    return replace(m, layer_windows=(None,) * m.num_layers) if any(m.layer_windows) else m


def simulate_offline(rows: list[Row], engine=OFFLINE_ENGINE, profile=None,
                     skipped: list | None = None,
                     full_attention: bool = FULL_ATTENTION) -> OfflineResult:
    """Predict each row's throughput (module docstring); a row the engine refuses (does not
    fit in memory, a layout the model cannot take) is set aside with the reason."""
    from .offline import offline_throughput
    preds, secs, skip = [], [], list(skipped or [])
    for r in rows:
        t0 = time.perf_counter()
        try:
            tok_s, _ = offline_throughput(
                full_attention_model(r.model) if full_attention else r.model, r.hardware, r.input_len, r.output_len, tp=r.tp, requests=r.batch,
                config=row_config(r, engine), engine=engine, profile=profile,
                wbits=DTYPE_BITS[r.weight_dtype], abits=DTYPE_BITS[r.act_dtype],
                kvbits=DTYPE_BITS[r.kv_dtype])
        except InputError as e:
            skip.append((r.id, f"engine refuses: {e}"))
            continue
        secs.append(time.perf_counter() - t0)
        preds.append(Prediction(r, "throughput_tok_s", r.measured["throughput_tok_s"], tok_s))
    return OfflineResult(preds, skip, secs, str(engine))
