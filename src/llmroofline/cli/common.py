"""Shared pieces of the command line: the app, consoles, number formatting, and the setup
options every engine command takes (declared once in ``deployment.SETUP_FIELDS``, added by
``@deployment_options``, turned into ``analyze`` keywords by ``engine_kwargs``)."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console

from ..deployment import SETUP_FIELDS, setup_kwargs
from ..errors import InputError
from ..gridspec import parse_seconds

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict LLM inference performance on any accelerator, and explain it.")
def fit_table(t, width: int) -> None:
    """Keep every number of a table whole at ``width`` columns: right-aligned (number)
    columns never shrink below their widest cell; left-aligned (text) columns wrap, and a
    boxed table drops its box when that is what it takes."""
    from rich.text import Text

    def cell_len(c) -> int:
        if isinstance(c, str):
            return max((Text.from_markup(x).cell_len for x in c.split("\n")), default=0)
        return getattr(c, "cell_len", 0) or 0
    cols = t.columns
    widths = [max([cell_len(c.header)] + [cell_len(x) for x in c._cells]) for c in cols]
    pad = sum(t.padding[1] + t.padding[3] for _ in cols) if hasattr(t, "padding") else 2 * len(cols)
    need = sum(widths) + pad + (len(cols) + 1 if t.box else 0)
    if need <= width:
        return
    if t.box and sum(widths) + pad <= width:
        t.box = None
        return
    t.box, t.collapse_padding = None, True      # one space between columns
    for c, w in zip(cols, widths):
        body = max([cell_len(x) for x in c._cells], default=0)
        c.no_wrap, c.overflow = False, "fold"     # a long header wraps, never a number
        c.min_width = body if c.justify == "right" else min(w, 10)


class _Out(Console):
    """The stdout console: tables are fitted to its width (no "1.…" cut numbers)."""

    def print(self, *objects, **kw):
        from rich.table import Table
        for o in objects:
            if isinstance(o, Table):
                fit_table(o, self.width)
        super().print(*objects, **kw)


out = _Out()
if not out.is_terminal:  # piped output: wide enough for the operator tables, no wrapping
    out = _Out(width=132)
err = Console(stderr=True)

BOUND_STYLE = {"compute": "red", "memory": "cyan", "overhead": "yellow", "communication": "magenta"}


# -- number formatting (decimal units: 1 GB = 1e9 bytes) ----------------------------------
def si(x: float, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    for p, s in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= p:
            return f"{x / p:.3g}{s}{unit}"
    return f"{x:.3g}{unit}"


def secs(x: float) -> str:
    if x is None or np.isnan(x):
        return "-"
    if x >= 1:
        return f"{x:.3f} s"
    if x >= 1e-3:
        return f"{x * 1e3:.3f} ms"
    return f"{x * 1e6:.1f} us"


def gb(x: float) -> str:
    return f"{x / 1e9:,.2f} GB"


# -- commands -------------------------------------------------------------------------------
# Options shared by every command that runs the engine: the setup fields are declared once
# (deployment.SETUP_FIELDS) and added to a command by @deployment_options.
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Built-in id or alias, config.json path, or hub id.")]


def setup_option(name: str):
    """The typer annotation of a declared setup field (type, flags, help)."""
    f = SETUP_FIELDS[name]
    return Annotated[f.type, typer.Option(*f.cli_flags, help=f.help)]


def deployment_options(*names: str):
    """Add the declared setup fields ``names`` (all when none are named) as options of a
    command; the command receives them bundled as its ``setup`` argument (a dict of field ->
    value), ready for :func:`deployment.setup_kwargs`. A new field is declared once in
    ``deployment.SETUP_FIELDS`` and every command that lists it gets it."""
    names = names or tuple(SETUP_FIELDS)

    def wrap(func):
        sig = inspect.signature(func, eval_str=True)
        own = [p for n, p in sig.parameters.items() if n != "setup"]
        added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY,
                                   default=SETUP_FIELDS[n].default, annotation=setup_option(n))
                 for n in names]

        @functools.wraps(func)
        def command(**kw):
            return func(setup={n: kw.pop(n) for n in names}, **kw)

        params = own + added
        command.__signature__ = sig.replace(parameters=params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command
    return wrap


def engine_kwargs(setup: dict) -> dict:
    """Keyword arguments of ``analyze`` from a command's ``setup`` options."""
    return setup_kwargs(setup)


def _engine_label(d: dict) -> str:
    """'engine X' or 'engine X, profile Y' when --profile replaced its kernels."""
    e, p = d.get("engine"), d.get("profile")
    return f"engine {e}" if p in (None, e) else f"engine {e}, profile {p}"


def _device_list(hardware: Optional[list[str]], devices: Optional[list[str]]) -> list[str]:
    """Devices from repeated/comma-separated --hardware and from bare arguments."""
    names = [n.strip() for v in (hardware or []) + (devices or []) for n in v.split(",")]
    return [n for n in names if n]


def _parse_seconds(field: str, text: Optional[str]) -> Optional[float]:
    """'50ms', '0.05s' or '0.05' (seconds) -> seconds; None stays None."""
    return None if text is None else parse_seconds(field, text)


def int_list(field: str, text: str) -> list[int]:
    """Comma-separated integers >= 1 ("1,2,4"), in the order given; one line naming the
    field otherwise."""
    vals = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = int(part)
        except ValueError:
            v = 0
        if v < 1:
            raise InputError(f"{field}: expected integers >= 1 separated by commas, got {text!r}")
        vals.append(v)
    if not vals:
        raise InputError(f"{field}: expected integers >= 1 separated by commas, got {text!r}")
    return vals
