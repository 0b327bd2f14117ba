"""Strict JSON for every ``--json`` output: NaN and infinities become ``null`` (JSON has
neither; Python's default would print the invalid tokens ``NaN`` and ``Infinity``)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def clean(x: Any) -> Any:
    """JSON-safe copy: non-finite floats -> None, numpy scalars and arrays -> Python."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, np.generic):
        return clean(x.item())
    return x


def dumps(data: Any, indent: int | None = 1) -> str:
    return json.dumps(clean(data), indent=indent, allow_nan=False)
