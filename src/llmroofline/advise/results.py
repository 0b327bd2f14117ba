"""Result types and how an outcome is judged against the baseline.

:class:`Lever` is one evaluated lever or combination, :class:`Advice` the whole answer.
``_gain`` is the speed-up factor of the goal's metric, ``_costs`` what else gets worse
(the lever's price), ``_rejection`` the constraints (memory, TTFT/TPOT limits, prices) an
outcome violates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .diagnosis import _fmt_s
from .setups import Outcome, _Ctx


@dataclass(frozen=True)
class Lever:
    """One evaluated lever (or combination); ranked by ``gain`` (> 1: better)."""

    lever: str
    category: str
    before: float
    after: float
    gain: float
    delta: float
    regime_after: str
    memory_after_bytes: float
    capacity_bytes: float
    caveat: str
    rejected: str | None
    parts: tuple[str, ...]
    outcome: Outcome = field(repr=False, compare=False)

    @property
    def fits(self) -> bool:
        return self.outcome.fits

    def to_dict(self) -> dict:
        o = self.outcome

        def num(x):
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x
        return {"lever": self.lever, "category": self.category, "before": num(self.before),
                "after": num(self.after), "gain": num(self.gain), "delta": num(self.delta),
                "regime_after": self.regime_after,
                "memory_after_bytes": self.memory_after_bytes,
                "capacity_bytes": self.capacity_bytes, "fits": self.fits,
                "caveat": self.caveat, "rejected": self.rejected, "parts": list(self.parts),
                "ttft_s": num(o.ttft_s), "tpot_s": num(o.tpot_s), "e2e_s": num(o.e2e_s),
                "throughput_tok_s": num(o.throughput_tok_s), "devices": o.devices,
                "config": o.setup.config()}


@dataclass(frozen=True)
class Advice:
    """Result of :func:`advise`: the diagnosis and the levers, best first."""

    goal: str
    metric_label: str
    higher_is_better: bool
    baseline: Outcome
    diagnosis: dict
    levers: tuple[Lever, ...]
    skipped: tuple[tuple[str, str], ...]
    constraints: dict
    notes: tuple[str, ...] = ()

    @property
    def accepted(self) -> list[Lever]:
        return [lv for lv in self.levers if not lv.rejected]

    @property
    def rejected(self) -> list[Lever]:
        return [lv for lv in self.levers if lv.rejected]

    def lever(self, name: str) -> Lever:
        for lv in self.levers:
            if lv.lever == name:
                return lv
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"diagnosis": self.diagnosis,
                "levers": [lv.to_dict() for lv in self.levers],
                "skipped": [{"lever": n, "reason": r} for n, r in self.skipped],
                "notes": list(self.notes)}


def _costs(goal: str, b: Outcome, o: Outcome) -> str:
    """What gets worse (by more than 5 %) besides the goal's own metric: the lever's price."""
    bits = []
    if goal != "ttft" and o.ttft_s > 1.05 * b.ttft_s:
        bits.append(f"TTFT {_fmt_s(b.ttft_s)} -> {_fmt_s(o.ttft_s)}")
    if goal != "tpot" and o.tpot_s > 1.05 * b.tpot_s:
        bits.append(f"TPOT {_fmt_s(b.tpot_s)} -> {_fmt_s(o.tpot_s)}")
    if goal != "throughput" and o.throughput_tok_s < b.throughput_tok_s / 1.05:
        bits.append(f"tokens/s {b.throughput_tok_s:,.0f} -> {o.throughput_tok_s:,.0f}")
    if o.devices != b.devices:
        bits.append(f"{b.devices} -> {o.devices} devices")
    return ", ".join(bits)


def _rejection(ctx: _Ctx, o: Outcome) -> str | None:
    why = []
    if not o.fits:
        why.append(f"does not fit: needs {o.memory_bytes / 1e9:.1f} GB of "
                   f"{o.capacity_bytes / 1e9:.0f} GB per device")
    if ctx.max_ttft_s is not None and o.ttft_s > ctx.max_ttft_s:
        why.append(f"TTFT {_fmt_s(o.ttft_s)} > {_fmt_s(ctx.max_ttft_s)}")
    if ctx.max_tpot_s is not None and o.tpot_s > ctx.max_tpot_s:
        why.append(f"TPOT {_fmt_s(o.tpot_s)} > {_fmt_s(ctx.max_tpot_s)}")
    if ctx.goal == "cost" and ctx.prices and o.setup.hardware.id not in ctx.prices:
        why.append(f"no price for {o.setup.hardware.id} in the price file")
    return "; ".join(why) or None


def _gain(before: float, after: float, sign: int) -> float:
    if not (math.isfinite(before) and math.isfinite(after)) or before <= 0 or after <= 0:
        return math.nan
    return after / before if sign > 0 else before / after


def _sort_gain(lv: Lever) -> float:
    return lv.gain if math.isfinite(lv.gain) else -math.inf
