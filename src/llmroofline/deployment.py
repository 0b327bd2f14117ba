"""One resolved deployment: model x hardware x precision x layout x engine.

Every prediction starts here. :func:`resolve` turns names, files and overrides into a
frozen :class:`Deployment`, with every check and error message of the setup in one
place; ``analyze``, the serving cost and simulator, ``capacity``, ``advise``, ``rank``,
``compare``, ``validate``, ``calibrate``, the CLI and the web build theirs through it.
Nothing else merges precision overrides, picks efficiency entries or applies engine
presets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import InputError
from .parallel import Layout
from .specs.catalog import DEFAULT_MODEL, load_model
from .specs.engine import Engine, compose_engine
from .specs.hardware import DEFAULT_HARDWARE, HardwareSpec, load_hardware
from .specs.model import ModelSpec
from .specs.precision import Precision, parse_quant
from .specs.profile import Efficiency
from .specs.quant_config import resolve_precision

@dataclass(frozen=True)
class Deployment:
    """What runs where, fully resolved (no names left to look up)."""

    model: ModelSpec
    hardware: HardwareSpec
    precision: Precision
    layout: Layout
    engine: Engine
    flash: bool = True
    cuda_graphs: bool = False     # decode steps replay CUDA graphs
    notes: tuple[str, ...] = ()   # how the precision was resolved (native quantization)

    @property
    def efficiency(self) -> Efficiency:
        """Efficiency of eager kernels: the device file's own ``[efficiency]`` block, else the
        engine's entry for the device family, looked up by activation width (weight-only
        W4A16 runs 16-bit kernels)."""
        hw = self.hardware
        return self.engine.efficiency(hw.efficiency, hw.family, self.precision.abits)

    @property
    def decode_efficiency(self) -> Efficiency:
        """Efficiency of decode steps: graphed when ``cuda_graphs`` is on."""
        e = self.efficiency
        return self.engine.graphed(e) if self.cuda_graphs else e

    def with_precision(self, precision: Precision) -> "Deployment":
        return replace(self, precision=precision)

    def with_layout(self, layout: Layout) -> "Deployment":
        layout.check(self.model)
        return replace(self, layout=layout)


def merge_precision(quant: str | Precision | None, wbits: int | None = None,
                    abits: int | None = None, kvbits: int | None = None) -> Precision:
    """A :class:`Precision` from a scheme string (``"fp8"``, ``"w4a16,kv-fp8"``) or a
    Precision, with explicit ``wbits``/``abits``/``kvbits`` overriding it."""
    given = {k: v for k, v in dict(wbits=wbits, abits=abits, kvbits=kvbits).items()
             if v is not None}
    if isinstance(quant, Precision):
        return replace(quant, **given) if given else quant
    return parse_quant(quant, **given)


def resolve(model: str | ModelSpec | Deployment = DEFAULT_MODEL,
            hardware: str | HardwareSpec | None = None, *,
            quant: str | Precision | None = None, wbits: int | None = None,
            abits: int | None = None, kvbits: int | None = None,
            layout: Layout | None = None, tp: int = 1, pp: int = 1, ep: int = 1, dp: int = 1,
            engine: str | Engine | None = None, profile=None, preset: str | None = None,
            flash: bool = True, cuda_graphs: bool | None = None) -> Deployment:
    """The :class:`Deployment` for these names and overrides.

    ``model``: built-in id or alias, config.json path, hub id, or a ModelSpec (a Deployment
    is returned as it is, and then no other argument may be given). ``hardware``: catalog
    id or alias, device TOML/YAML, or a HardwareSpec. ``quant`` with ``wbits``/``abits``/
    ``kvbits`` overriding it. ``layout`` or ``tp``/``pp``/``ep``/``dp``. ``engine`` (name or
    file); ``profile`` replaces its efficiency part and ``preset`` its scheduler part (the
    older spellings). ``cuda_graphs``: None takes the engine's default.
    """
    if isinstance(model, Deployment):
        extra = {k: v for k, v in dict(hardware=hardware, quant=quant, wbits=wbits, abits=abits,
                                       kvbits=kvbits, layout=layout, engine=engine,
                                       profile=profile, preset=preset,
                                       cuda_graphs=cuda_graphs).items() if v is not None}
        extra.update({k: v for k, v in dict(tp=tp, pp=pp, ep=ep, dp=dp).items() if v != 1})
        if not flash:
            extra["flash"] = flash
        if extra:
            raise InputError(f"deployment: given a resolved Deployment, also got "
                             f"{', '.join(sorted(extra))}; change it with dataclasses.replace")
        return model
    m = load_model(model)
    hw = load_hardware(hardware if hardware is not None else DEFAULT_HARDWARE)
    if isinstance(quant, Precision):
        prec, notes = merge_precision(quant, wbits, abits, kvbits), []
    else:   # a release's native quantization unless a weight scheme overrides it
        prec, notes = resolve_precision(m, quant, wbits, abits, kvbits, hw)
    if layout is not None and (tp, pp, ep, dp) != (1, 1, 1, 1):
        raise InputError("layout: give either a Layout or tp/pp/ep/dp, not both")
    lay = layout or Layout(tp=tp, pp=pp, ep=ep, dp=dp)
    lay.check(m)
    eng = compose_engine(engine, profile, preset)
    graphs = eng.cuda_graphs if cuda_graphs is None else bool(cuda_graphs)
    return Deployment(m, hw, prec, lay, eng, flash=bool(flash), cuda_graphs=graphs,
                      notes=tuple(notes))
