"""Parse grid arguments: ``16``, ``1,8,64``, ``1:256`` (powers of two), ``128:32768:16``."""

from __future__ import annotations

import numpy as np

from .errors import InputError

MAX_GRID_POINTS = 1_000_000


def parse_grid(field: str, text: str | int, lo: int = 1, hi: int = 10_000_000) -> np.ndarray:
    """Integer values of a grid argument.

    ``a:b``   powers of two from a to b (a and b included when they are powers of two;
              otherwise a, the powers of two between, and b).
    ``a:b:n`` n log-spaced integers from a to b (duplicates after rounding removed).
    ``x,y,z`` an explicit list.  ``x`` a single value.
    """
    s = str(text).strip()
    help_ = (f"{field} must be an integer in [{lo}, {hi}], a list '1,8,64', a power-of-two "
             f"range '1:256', or a log range '128:32768:16'")
    try:
        if ":" in s:
            parts = [int(p) for p in s.split(":")]
            if len(parts) == 2:
                a, b = parts
                _check(field, a, lo, hi, help_)
                _check(field, b, lo, hi, help_)
                if b < a:
                    raise InputError(f"{field}: range start {a} is larger than its end {b}")
                pows = [2 ** k for k in range(0, 64) if a <= 2 ** k <= b]
                vals = sorted({a, b, *pows})
            elif len(parts) == 3:
                a, b, n = parts
                _check(field, a, lo, hi, help_)
                _check(field, b, lo, hi, help_)
                if b < a:
                    raise InputError(f"{field}: range start {a} is larger than its end {b}")
                if not 1 <= n <= 4096:
                    raise InputError(f"{field}: number of points must be in [1, 4096], got {n}")
                vals = sorted(set(np.round(np.geomspace(a, b, n)).astype(int).tolist()))
            else:
                raise ValueError
        else:
            vals = [int(p) for p in s.split(",")]
            for v in vals:
                _check(field, v, lo, hi, help_)
    except InputError:  # a specific message from inside the try (InputError is a ValueError)
        raise
    except ValueError:
        raise InputError(f"{help_}; got {s!r}") from None
    return np.asarray(vals, dtype=float)


def _check(field: str, v: int, lo: int, hi: int, help_: str) -> None:
    if not lo <= v <= hi:
        raise InputError(f"{field} must be in [{lo}, {hi}], got {v}")


def cartesian(**axes: np.ndarray) -> dict[str, np.ndarray]:
    """Broadcastable open mesh of the axes (one array dimension per axis)."""
    n = int(np.prod([len(v) for v in axes.values()]))
    if n > MAX_GRID_POINTS:
        raise InputError(f"grid has {n} points; at most {MAX_GRID_POINTS} are allowed")
    return dict(zip(axes, np.ix_(*axes.values())))


def parse_seconds(field: str, text) -> float:
    """A positive time: '50ms', '20us', '0.05s' or '0.05' (seconds) -> seconds; one line
    naming ``field`` otherwise."""
    s = str(text).strip().lower()
    scale = 1.0
    for suf, k in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if s.endswith(suf):
            s, scale = s[: -len(suf)], k
            break
    try:
        v = float(s) * scale
    except ValueError:
        v = float("nan")
    if not 0 < v < float("inf"):
        raise InputError(f"{field} must be a positive time such as 50ms or 0.05s, got {text!r}")
    return v
