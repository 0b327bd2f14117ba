"""Device comparison meshes: throughput of two or more accelerators over batch x sequence.

A mesh cell is one generation workload (``docs/conventions.md``, "Comparison mesh"):

- ``batch`` sequences decode ``output_len`` tokens each (``output_len`` even, fixed over the
  mesh) after a prompt of ``input_len = seq - output_len / 2`` tokens, so the decode steps
  attend to ``input_len + 1 .. input_len + output_len - 1`` tokens: their mean KV length is
  exactly ``seq``.
- The cell value of a device is its **decode throughput**, generated tokens per second of
  the batch in the decode phase, ``batch / tpot_s`` (prefill excluded: it is a separate,
  compute-bound phase whose ratio is the ratio of compute peaks).
- ``method="ops"``: ``tpot_s`` from the per-operator engine (each operator on its own
  roofline, exact sum over the decode steps).
  ``method="global"``: the whole model as one operator. From the same engine's decode step
  (mean over the steps: FLOPs ``F``, weight bytes ``W`` and KV cache bytes ``K``), the
  arithmetic intensity is ``AI = F / (W + K)``, the attainable rate
  ``min(peak, AI x bandwidth)`` (matmul peak of the precision and memory bandwidth, both
  times the device's efficiency), so a step takes ``F / attainable`` seconds and the
  throughput is ``batch x attainable / F``. With tensor/expert parallelism ``F``, ``W``
  and ``K`` are one device's share and collectives are left out (the global view has no
  communication term); pipeline parallelism needs ``method="ops"``.
- With ``dp`` replicas both methods count the tokens of all replicas.
- A cell is masked (NaN ratio) where the workload does not fit a device's memory
  (weights + KV cache for ``input_len + output_len`` tokens + activation peak) or where
  ``input_len + output_len`` exceeds the model's context (unless ``ignore_context``).

Each device costs one vectorized :func:`llmroofline.analyze` call over the whole mesh,
whichever methods are asked for.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .cost import Roofline
from .errors import InputError
from .phases import Analysis, analyze
from .specs.catalog import load_model
from .specs.hardware import HardwareSpec, load_hardware
from .specs.model import ModelSpec

METHODS = ("ops", "global")
TIE_REL = 1e-3  # |ratio - 1| below this is a tie: neither device wins the cell


@dataclass(frozen=True)
class Mesh:
    """Throughput of each device over a batch x seq mesh, and their comparison.

    Arrays: ``throughput_tok_s`` and ``fits`` are ``[n_devices, n_batch, n_seq]``;
    ``in_context`` is ``[n_seq]``. ``throughput_tok_s`` is the prediction whether or not
    the workload fits (NaN only beyond the model's context); :attr:`valid` says which
    cells are comparable and :attr:`ratio` is NaN elsewhere.
    """

    model: str
    hardware: tuple[str, ...]
    method: str
    precision: str
    output_len: int
    batch: np.ndarray
    seq: np.ndarray
    throughput_tok_s: np.ndarray
    fits: np.ndarray
    in_context: np.ndarray
    context_limit: int
    warnings: tuple[str, ...] = ()
    layout: str = "1 device"

    @property
    def input_len(self) -> np.ndarray:
        return self.seq - self.output_len // 2

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.batch), len(self.seq))

    def to_json(self) -> dict:
        """The mesh as JSON-ready data (``compare --json`` and the web API): the summary,
        the axes, throughput and fits per device, and the ratio of two devices (NaN -> null)."""
        def clean(a):
            return [[None if np.isnan(x) else float(x) for x in row] for row in a]
        d = self.summary()
        d.update(batch=self.batch.tolist(), seq=self.seq.tolist(), input_len=self.input_len.tolist(),
                 throughput_tok_s={h: clean(self.throughput_tok_s[k]) for k, h in enumerate(self.hardware)},
                 fits={h: self.fits[k].tolist() for k, h in enumerate(self.hardware)})
        if len(self.hardware) == 2:
            d["ratio"] = clean(self.ratio)
        return d

    @property
    def valid(self) -> np.ndarray:
        """Cells within the context where every device fits: [n_batch, n_seq]."""
        return np.all(self.fits, axis=0) & self.in_context[None, :]

    @property
    def ratio_raw(self) -> np.ndarray:
        """Throughput of device 0 / device 1 everywhere within the context (memory ignored)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.throughput_tok_s[0] / self.throughput_tok_s[1]

    @property
    def ratio(self) -> np.ndarray:
        """Throughput of device 0 / device 1 (> 1: device 0 faster); NaN where not :attr:`valid`."""
        return np.where(self.valid, self.ratio_raw, np.nan)

    @property
    def winner(self) -> np.ndarray:
        """Index of the fastest device per valid cell; -1 where invalid, -2 for a tie."""
        t = np.where(np.isnan(self.throughput_tok_s), -np.inf, self.throughput_tok_s)
        best = np.argmax(t, axis=0)
        top = np.max(t, axis=0)
        second = np.sort(t, axis=0)[-2] if len(self.hardware) > 1 else -np.inf
        with np.errstate(invalid="ignore"):
            tie = second >= top * (1 - TIE_REL)
        return np.where(self.valid, np.where(tie, -2, best), -1)

    @property
    def only_fits(self) -> np.ndarray:
        """[n_devices, n_batch, n_seq]: cells (within the context) that only this device fits."""
        alone = self.fits & (self.fits.sum(axis=0) == 1)[None]
        return alone & self.in_context[None, None, :]

    def win_fraction(self) -> np.ndarray:
        """Fraction of the valid cells each device wins (ties count for none)."""
        w = self.winner
        n = max(int(self.valid.sum()), 1)
        return np.array([(w == i).sum() / n for i in range(len(self.hardware))])

    def summary(self) -> dict:
        """Where each device wins, and which cells are masked (plain data for text/JSON)."""
        w = self.winner
        n_valid = int(self.valid.sum())
        devices = []
        for i, hw in enumerate(self.hardware):
            cells = w == i
            d = {"hardware": hw, "cells_won": int(cells.sum()),
                 "fraction": float(cells.sum() / n_valid) if n_valid else 0.0,
                 "cells_not_fitting": int((~self.fits[i] & self.in_context[None, :]).sum()),
                 "cells_only_this_fits": int(self.only_fits[i].sum())}
            if cells.any():
                bi, si = np.nonzero(cells)
                d["batch_range"] = [float(self.batch[bi.min()]), float(self.batch[bi.max()])]
                d["seq_range"] = [float(self.seq[si.min()]), float(self.seq[si.max()])]
            devices.append(d)
        out = {"model": self.model, "method": self.method, "precision": self.precision,
               "layout": self.layout,
               "output_len": self.output_len, "cells": int(self.valid.size),
               "cells_compared": n_valid, "cells_tied": int((w == -2).sum()),
               "cells_beyond_context": int((~self.in_context).sum() * len(self.batch)),
               "devices": devices}
        if len(self.hardware) >= 2 and n_valid:
            r = self.ratio[self.valid]
            out["ratio_min"], out["ratio_max"] = float(r.min()), float(r.max())
        return out

    def to_dataframe(self):
        """Long table of the raw mesh: one row per (batch, seq) cell."""
        import pandas as pd
        bb, ss = np.meshgrid(self.batch, self.seq, indexing="ij")
        cols = {"batch": bb.ravel().astype(int), "seq": ss.ravel().astype(int),
                "input_len": (ss - self.output_len // 2).ravel().astype(int),
                "output_len": self.output_len,
                "in_context": np.broadcast_to(self.in_context[None, :], bb.shape).ravel()}
        for i, hw in enumerate(self.hardware):
            cols[f"{hw}_tok_s"] = self.throughput_tok_s[i].ravel()
            cols[f"{hw}_fits"] = self.fits[i].ravel()
        if len(self.hardware) >= 2:
            cols[f"ratio_{self.hardware[0]}_over_{self.hardware[1]}"] = self.ratio.ravel()
        df = pd.DataFrame(cols)
        df.insert(0, "method", self.method)
        return df


def mesh_workload(seq, output_len: int) -> np.ndarray:
    """``input_len`` of the cells: ``seq - output_len / 2`` (decode mean KV length = seq)."""
    return np.asarray(seq, dtype=float) - output_len // 2


def _check_axes(batch, seq, output_len) -> tuple[np.ndarray, np.ndarray, int]:
    if isinstance(output_len, bool) or not isinstance(output_len, (int, np.integer)) \
            or output_len < 2 or output_len % 2:
        raise InputError(f"output_len must be an even integer >= 2 (the mesh's seq is the mean "
                         f"KV length input_len + output_len/2), got {output_len!r}")
    out = []
    for name, v in (("batch", batch), ("seq", seq)):
        a = np.atleast_1d(np.asarray(v, dtype=float))
        if a.ndim != 1 or a.size == 0:
            raise InputError(f"{name} must be a non-empty 1-D list of integers")
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)) or np.any(a < 1):
            raise InputError(f"{name} must hold integers >= 1, got {v!r}")
        if np.any(np.diff(a) <= 0):
            raise InputError(f"{name} must be strictly increasing")
        out.append(a)
    lo = output_len // 2 + 1
    if out[1][0] < lo:
        raise InputError(f"seq must be >= output_len/2 + 1 = {lo} (input_len = seq - "
                         f"output_len/2 >= 1), got {out[1][0]:g}; lower --output or raise --seq")
    return out[0], out[1], int(output_len)


def _hardware_list(hardware_list) -> list[HardwareSpec]:
    if isinstance(hardware_list, (str, HardwareSpec)):
        hardware_list = [hardware_list]
    hws = [load_hardware(h) for h in hardware_list]
    if len(hws) < 2:
        raise InputError(f"hardware: a comparison needs at least two devices, got {len(hws)}")
    ids = [h.id for h in hws]
    if len(set(ids)) != len(ids):
        raise InputError(f"hardware: device listed twice ({', '.join(ids)})")
    return hws


def decode_throughput(a: Analysis, method: str) -> np.ndarray:
    """Decode throughput of an analysis by ``method``: generated tokens/s of the deployment
    (``dp`` replicas x ``batch`` sequences) per decode step time."""
    if method == "ops":
        return a.layout.dp * a.batch / a.tpot_s
    if method == "global":
        if a.layout.pp > 1:
            raise InputError("method: global models one device's share of the whole model; "
                             "pipeline parallelism (pp > 1) needs method ops")
        roof = Roofline.of(a.hardware, a.precision, a.layout, a.efficiency)
        peak = roof.peaks["gemm"] * roof.eff.compute
        flops = a.decode.flops                      # mean FLOPs of one decode step, per device
        traffic = sum(o.weight_bytes + o.kv_bytes for o in a.decode.ops)
        with np.errstate(divide="ignore", invalid="ignore"):
            intensity = flops / traffic
            attainable = np.minimum(peak, intensity * roof.bytes_s)
            return a.layout.dp * a.batch * attainable / flops
    raise InputError(f"method must be one of {', '.join(METHODS)} or both, got {method!r}")


def compare_methods(model: str | ModelSpec, hardware_list, batch, seq, methods=METHODS,
                    output_len: int = 128, *, ignore_context: bool = False,
                    **engine_kwargs) -> dict[str, Mesh]:
    """One :class:`Mesh` per method, all from one vectorized ``analyze`` call per device."""
    methods = tuple(methods)
    for mt in methods:
        if mt not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)} or both, got {mt!r}")
    m = load_model(model)
    hws = _hardware_list(hardware_list)
    B, S, O = _check_axes(batch, seq, output_len)
    I = mesh_workload(S, O)
    limit = m.max_position_embeddings
    if ignore_context:
        in_ctx = np.ones(S.shape, bool)
        m = dataclasses.replace(m, max_position_embeddings=max(limit, int(I.max()) + O))
    else:
        in_ctx = I + O <= limit
        if not in_ctx.any():
            raise InputError(f"seq: every value exceeds the context of {m.name} "
                             f"(input_len + output_len <= {limit}, i.e. seq <= "
                             f"{limit - O // 2}); lower --seq or pass --ignore-context")
    I_eval = np.where(in_ctx, I, I[in_ctx].max())  # out-of-context cells are masked below
    tp = {mt: [] for mt in methods}
    fits, warnings = [], []
    for hw in hws:
        a = analyze(m, hw, B[:, None], I_eval[None, :], O, **engine_kwargs)
        for mt in methods:
            tp[mt].append(np.where(in_ctx[None, :], decode_throughput(a, mt), np.nan))
        fits.append(np.asarray(a.memory.fits, dtype=bool))
        warnings.extend(a.warnings)
        precision, layout = a.precision.label, a.layout.label
    return {mt: Mesh(m.name, tuple(h.id for h in hws), mt, precision, O, B, S,
                     np.stack(tp[mt]), np.stack(fits), in_ctx, limit,
                     tuple(dict.fromkeys(warnings)), layout)
            for mt in methods}


def compare(model: str | ModelSpec, hardware_list, batch, seq, method: str = "ops",
            output_len: int = 128, *, ignore_context: bool = False, **engine_kwargs) -> Mesh:
    """Throughput mesh of ``hardware_list`` (two or more devices) over ``batch`` x ``seq``.

    ``seq`` is the mean KV length of the decode steps (module docstring); ``method`` is
    ``"ops"`` (per-operator engine) or ``"global"`` (whole-model intensity).
    ``engine_kwargs`` go to :func:`llmroofline.analyze` (``wbits``, ``abits``, ...).
    """
    return compare_methods(model, hardware_list, batch, seq, (method,), output_len,
                           ignore_context=ignore_context, **engine_kwargs)[method]


def sign_agreement(a: Mesh, b: Mesh) -> float:
    """Fraction of the cells valid in both meshes where sign(log ratio) is the same
    (a tie, |ratio - 1| < 0.1 %, counts as sign 0)."""
    valid = a.valid & b.valid

    def sign(r):
        lr = np.log(r[valid])
        return np.where(np.abs(lr) < TIE_REL, 0, np.sign(lr))

    if not valid.any():
        return float("nan")
    return float(np.mean(sign(a.ratio) == sign(b.ratio)))





def compare_payload(meshes: list[Mesh]) -> dict:
    """``{"meshes": [...], "sign_agreement_ops_global": share}`` (the agreement only for
    two methods over two devices; None when no cell compares): compare --json's data."""
    data: dict = {"meshes": [m.to_json() for m in meshes]}
    if len(meshes) == 2 and len(meshes[0].hardware) == 2:
        agree = sign_agreement(*meshes)
        data["sign_agreement_ops_global"] = None if np.isnan(agree) else float(agree)
    return data


__all__ = ["Mesh", "compare_payload", "compare", "compare_methods", "decode_throughput", "mesh_workload",
           "sign_agreement", "METHODS"]
