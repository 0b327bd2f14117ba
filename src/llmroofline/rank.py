"""Rank accelerators for one workload: tokens/s, tokens/s per watt, tokens per dollar.

For each device the engine predicts the workload (``analyze``: prefill + decode, static
batch). Metrics, all of generated tokens (``output_len`` per sequence, prefill included):

- ``throughput_tok_s``: tokens/s of the deployment (``tp x pp x dp`` devices);
- ``tok_s_per_device`` = throughput / devices;
- ``tok_s_per_w`` = tokens/s per device / ``tdp_w`` (board power at full load; an upper
  bound on draw, so this is a lower bound on efficiency). Devices without a TDP in the
  catalog get NaN and rank last with a note;
- ``tok_per_usd`` = tokens/s x 3600 / (USD per device-hour x devices), when a price file
  gives the device's price.

Constraints: the workload must fit the device memory; ``max_ttft_s`` and ``max_tpot_s``
bound the latencies. Devices that miss one are listed with the reason, unranked.
``batch="max"``: each device runs the batch (1 .. its largest that fits) with the highest
throughput that meets the latency constraints. ``tp="auto"``: the fewest tensor-parallel
devices (1, 2, 4, 8) on which the workload fits.
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, suggest
from .phases import Analysis, analyze
from .specs.catalog import load_model
from .specs.hardware import HardwareSpec, hardware_ids, load_hardware

SORT_KEYS = {
    "tok_s": "throughput_tok_s",
    "tok_s_per_device": "tok_s_per_device",
    "tok_s_per_w": "tok_s_per_w",
    "tok_per_usd": "tok_per_usd",
}
AUTO_TP = (1, 2, 4, 8)
MAX_BATCH_CANDIDATES = 4096


@dataclass(frozen=True)
class RankRow:
    hardware: str
    name: str
    vendor: str
    tp: int
    devices: int
    batch: int
    fits: bool
    memory_bytes: float
    capacity_bytes: float
    ttft_s: float
    tpot_s: float
    throughput_tok_s: float
    tok_s_per_device: float
    tdp_w: float | None
    tok_s_per_w: float
    usd_per_hour: float | None
    tok_per_usd: float
    ok: bool
    reasons: tuple[str, ...] = ()
    rank: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


@dataclass(frozen=True)
class Ranking:
    model: str
    precision: str
    input_len: int
    output_len: int
    batch: str
    sort_by: str
    constraints: dict
    rows: tuple[RankRow, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def ranked(self) -> tuple[RankRow, ...]:
        return tuple(r for r in self.rows if r.rank is not None)

    def to_dicts(self) -> list[dict]:
        return [r.to_dict() for r in self.rows]

    def to_json_data(self) -> dict:
        return {"model": self.model, "precision": self.precision, "input_len": self.input_len,
                "output_len": self.output_len, "batch": self.batch, "sort_by": self.sort_by,
                "constraints": self.constraints, "notes": list(self.notes),
                "devices": self.to_dicts()}

    def to_dataframe(self):
        import pandas as pd
        df = pd.DataFrame(self.to_dicts())
        df["reasons"] = df["reasons"].map("; ".join)
        return df


# -- prices ------------------------------------------------------------------------------
def load_prices(path: str | Path) -> dict[str, float]:
    """Device id -> USD per device-hour, from TOML or CSV.

    TOML: ``h100-sxm = 2.49`` lines (optionally inside a ``[usd_per_hour]`` table).
    CSV: two columns ``device,usd_per_hour`` (a header row is optional).
    """
    from .safeio import read_text
    p = Path(path)
    text = read_text(p, "prices", what="prices .toml or .csv file")
    raw: dict[str, object] = {}
    if p.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"prices: cannot parse {p}: {str(e).splitlines()[0]}") from None
        if len(data) == 1 and isinstance(next(iter(data.values())), dict):
            data = next(iter(data.values()))
        raw = dict(data)
    elif p.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        for i, r in enumerate(rows):
            if len(r) < 2:
                raise InputError(f"prices: {p} line {i + 1}: expected 'device,usd_per_hour'")
            try:
                raw[r[0].strip()] = float(r[1])
            except ValueError:
                if i == 0:
                    continue  # header
                raise InputError(f"prices: {p} line {i + 1}: price must be a number, got "
                                 f"{r[1]!r}") from None
    else:
        raise InputError(f"prices: file suffix must be .toml or .csv, got '{p.name}'")
    out = {}
    for k, v in raw.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise InputError(f"prices: USD per hour of '{k}' must be a positive number, got {v!r}")
        out[str(k).lower()] = float(v)
    if not out:
        raise InputError(f"prices: {p} has no device prices")
    return out


# -- device selection --------------------------------------------------------------------
def select_devices(hardware=None, vendor: str | None = None) -> list[HardwareSpec]:
    """Devices to rank: the given ids/files, else the whole catalog; optionally one vendor."""
    hws = [load_hardware(h) for h in (hardware or hardware_ids())]
    if vendor:
        vendors = sorted({h.vendor for h in (load_hardware(i) for i in hardware_ids()) if h.vendor})
        if vendor.lower() not in {v.lower() for v in vendors}:
            raise InputError(f"vendor: unknown vendor '{vendor}'" + suggest(vendor, vendors)
                             + f" (known: {', '.join(vendors)})")
        hws = [h for h in hws if h.vendor.lower() == vendor.lower()]
        if not hws:
            raise InputError(f"vendor: none of the given devices is made by {vendor}")
    return hws


# -- ranking ---------------------------------------------------------------------------------
def _pick_tp(m, hw, batch, input_len, output_len, kw) -> tuple[int, list[str]]:
    """Fewest devices of AUTO_TP on which the workload fits (1 if none does)."""
    tried = []
    for tp in AUTO_TP:
        try:
            a = analyze(m, hw, 1 if batch == "max" else batch, input_len, output_len, tp=tp, **kw)
        except InputError as e:
            tried.append(f"tp {tp}: {e}")
            continue
        if bool(a.memory.fits):
            return tp, []
    return 1, [f"does not fit on up to {AUTO_TP[-1]} devices"] + tried[:1]


def _best_batch(m, hw, input_len, output_len, kw, max_ttft_s, max_tpot_s):
    """Analysis at the batch (1 .. max that fits) with the highest throughput within limits."""
    a1 = analyze(m, hw, 1, input_len, output_len, **kw)
    top = int(a1.max_batch)
    if top < 1:
        return a1, ()
    if top <= MAX_BATCH_CANDIDATES:
        cand = np.arange(1, top + 1, dtype=float)
        note = ()
    else:
        cand = np.unique(np.round(np.geomspace(1, top, MAX_BATCH_CANDIDATES)))
        note = (f"{hw.id}: batch chosen among {len(cand)} log-spaced values up to {top}",)
    a = analyze(m, hw, cand, input_len, output_len, **kw)
    ok = np.asarray(a.memory.fits, bool).copy()
    if max_ttft_s is not None:
        ok &= a.ttft_s <= max_ttft_s
    if max_tpot_s is not None:
        ok &= ~(a.tpot_s > max_tpot_s)
    if not ok.any():
        return a1, note
    i = int(np.argmax(np.where(ok, a.throughput_tok_s, -np.inf)))
    return analyze(m, hw, int(cand[i]), input_len, output_len, **kw), note


def _int_or_word(v, word: str, error: str):
    """A CLI text that is an integer or the keyword ``word``; other values pass through."""
    if not isinstance(v, str):
        return v
    if v.strip().lower() == word:
        return word
    try:
        return int(v)
    except ValueError:
        raise InputError(error) from None


def rank(model, hardware=None, *, vendor: str | None = None, batch: int | str = 1,
         input_len: int = 512, output_len: int = 128, max_ttft_s: float | None = None,
         max_tpot_s: float | None = None, prices: dict[str, float] | str | Path | None = None,
         sort_by: str = "tok_s", tp: int | str = 1, **engine_kwargs) -> Ranking:
    """Rank devices for one workload (module docstring); ``engine_kwargs`` go to ``analyze``."""
    if sort_by not in SORT_KEYS:
        raise InputError(f"sort: must be one of {', '.join(SORT_KEYS)}, got {sort_by!r}"
                         + suggest(sort_by, SORT_KEYS))
    batch = _int_or_word(batch, "max", f"batch must be an integer >= 1 or 'max', got {batch!r}")
    if batch != "max" and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
        raise InputError(f"batch must be an integer >= 1 or 'max', got {batch!r}")
    for name, v in (("max_ttft", max_ttft_s), ("max_tpot", max_tpot_s)):
        if v is not None and not 0 < v < math.inf:
            raise InputError(f"{name} must be a positive number of seconds, got {v!r}")
    tp = _int_or_word(tp, "auto", f"tp must be an integer in [1, 1024] or 'auto', got {tp!r}")
    if isinstance(prices, (str, Path)):
        prices = load_prices(prices)
    if sort_by == "tok_per_usd" and not prices:
        raise InputError("sort: tok_per_usd needs a price file (--prices FILE.toml|.csv)")
    m = load_model(model)
    hws = select_devices(hardware, vendor)
    if prices:
        known = {h.id for h in hws} | set(hardware_ids())
        for k in prices:
            if k not in known:
                raise InputError(f"prices: unknown device '{k}'" + suggest(k, known))
    rows, notes, errors = [], [], []
    precision = ""
    for hw in hws:
        kw = dict(engine_kwargs)
        reasons: list[str] = []
        try:
            if tp == "auto":
                kw["tp"], why = _pick_tp(m, hw, batch, input_len, output_len, engine_kwargs)
                reasons += why
            else:
                kw["tp"] = tp
            if batch == "max":
                a, nb = _best_batch(m, hw, input_len, output_len, kw, max_ttft_s, max_tpot_s)
                notes.extend(nb)
            else:
                a = analyze(m, hw, batch, input_len, output_len, **kw)
        except InputError as e:
            errors.append(e)
            rows.append(_error_row(hw, str(e), prices))
            continue
        precision = a.precision.label
        notes.extend(f"{hw.id}: {w}" for w in a.warnings)
        rows.append(_row(a, hw, reasons, prices, max_ttft_s, max_tpot_s))
    if errors and len(errors) == len(hws):
        raise errors[0]
    key = SORT_KEYS[sort_by]

    def order(r: RankRow):
        v = getattr(r, key)
        return (not r.ok, math.isnan(v), -v if not math.isnan(v) else 0.0, r.hardware)

    rows.sort(key=order)
    out, n = [], 0
    for r in rows:
        if r.ok:
            n += 1
            out.append(_replace(r, rank=n))
        else:
            out.append(r)
    if sort_by == "tok_s_per_w":
        missing = [r.hardware for r in out if r.tdp_w is None]
        if missing:
            notes.append(f"no TDP in the catalog, ranked last: {', '.join(missing)}")
    if sort_by == "tok_per_usd":
        missing = [r.hardware for r in out if r.usd_per_hour is None]
        if missing:
            notes.append(f"no price in the price file, ranked last: {', '.join(missing)}")
    return Ranking(m.name, precision, int(input_len), int(output_len), str(batch), sort_by,
                   {"max_ttft_s": max_ttft_s, "max_tpot_s": max_tpot_s, "tp": tp},
                   tuple(out), tuple(dict.fromkeys(notes)))


def _replace(r: RankRow, **kw) -> RankRow:
    from dataclasses import replace
    return replace(r, **kw)


def _row(a: Analysis, hw: HardwareSpec, reasons, prices, max_ttft_s, max_tpot_s) -> RankRow:
    devices = a.layout.devices
    tput = float(a.throughput_tok_s)
    per_dev = tput / devices
    fits = bool(a.memory.fits)
    ttft, tpot = float(a.ttft_s), float(a.tpot_s)
    reasons = list(reasons)
    if not fits:
        if not reasons:
            reasons.append(f"does not fit: needs {float(a.memory.total_bytes) / 1e9:.1f} GB of "
                           f"{a.memory.capacity_bytes / 1e9:.0f} GB")
    if max_ttft_s is not None and ttft > max_ttft_s:
        reasons.append(f"TTFT {ttft * 1e3:.1f} ms > {max_ttft_s * 1e3:g} ms")
    if max_tpot_s is not None and tpot > max_tpot_s:
        reasons.append(f"TPOT {tpot * 1e3:.2f} ms > {max_tpot_s * 1e3:g} ms")
    usd = prices.get(hw.id) if prices else None
    return RankRow(
        hardware=hw.id, name=hw.name, vendor=hw.vendor, tp=a.layout.tp, devices=devices,
        batch=int(a.batch), fits=fits, memory_bytes=float(a.memory.total_bytes),
        capacity_bytes=float(a.memory.capacity_bytes), ttft_s=ttft, tpot_s=tpot,
        throughput_tok_s=tput, tok_s_per_device=per_dev, tdp_w=hw.tdp_w,
        tok_s_per_w=per_dev / hw.tdp_w if hw.tdp_w else math.nan,
        usd_per_hour=usd, tok_per_usd=tput * 3600 / (usd * devices) if usd else math.nan,
        ok=not reasons, reasons=tuple(reasons))


def _error_row(hw: HardwareSpec, msg: str, prices) -> RankRow:
    nan = math.nan
    return RankRow(hw.id, hw.name, hw.vendor, 0, 0, 0, False, nan, hw.memory_bytes, nan, nan,
                   nan, nan, hw.tdp_w, nan, prices.get(hw.id) if prices else None, nan, False,
                   (msg,))


__all__ = ["rank", "Ranking", "RankRow", "load_prices", "select_devices", "SORT_KEYS"]
