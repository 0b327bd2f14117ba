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
from typing import Any, Optional

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
            dp_attention: int = 1,
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
        extra.update({k: v for k, v in dict(tp=tp, pp=pp, ep=ep, dp=dp,
                                            dp_attention=dp_attention).items() if v != 1})
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
    if layout is not None and (tp, pp, ep, dp, dp_attention) != (1, 1, 1, 1, 1):
        raise InputError("layout: give either a Layout or tp/pp/ep/dp/dp_attention, not both")
    lay = layout or Layout(tp=tp, pp=pp, ep=ep, dp=dp, dp_attention=dp_attention)
    lay.check(m)
    eng = compose_engine(engine, profile, preset)
    eng.check_layout(lay, m)
    if lay.dp_attention > 1 and eng.fp8_dispatch and not lay.fp8_dispatch:
        lay = replace(lay, fp8_dispatch=True)
    graphs = eng.cuda_graphs if cuda_graphs is None else bool(cuda_graphs)
    return Deployment(m, hw, prec, lay, eng, flash=bool(flash), cuda_graphs=graphs,
                      notes=tuple(notes))


@dataclass(frozen=True)
class SetupField:
    """One setup field as the CLI and the web expose it, declared once: the CLI options
    (``cli.common.deployment_options``) and the web schema (``web.schemas``) take their
    type, default and help text from here; ranges are checked where the value is used
    (``Layout``, ``Precision``, ``Engine``), so the range text here is the same rule."""

    name: str
    type: Any
    default: Any
    help: str
    flags: tuple[str, ...] = ()
    web: bool = True            # exposed in the HTTP API (layout extras are CLI-only)

    @property
    def cli_flags(self) -> tuple[str, ...]:
        return self.flags or ("--" + self.name.replace("_", "-"),)


SETUP_FIELDS: dict[str, SetupField] = {f.name: f for f in (
    SetupField("quant", Optional[str], None,
               "Scheme: fp16, bf16, fp8, int8-sq, w8a16, w4a16, fp4; KV: kv-fp8, kv-int8, "
               "kv-int4; combine with commas (e.g. w4a16,kv-fp8). Default: the checkpoint's "
               "own format, else 16-bit.", ("--quant", "-q")),
    SetupField("wbits", Optional[int], None, "Weight bits: 4, 8, 16, 32 (overrides quant)."),
    SetupField("abits", Optional[int], None, "Activation bits: 4, 8, 16, 32."),
    SetupField("kvbits", Optional[int], None, "KV cache bits: 4, 8, 16, 32."),
    SetupField("flash", bool, True, "Fused (FlashAttention-style) attention.",
               ("--flash/--no-flash",)),
    SetupField("cuda_graphs", bool, False,
               "Decode steps replay CUDA graphs: launch overhead x the engine's "
               "cuda_graph_launch_factor (0.2) per kernel; prefill stays eager."),
    SetupField("prefill_chunk", Optional[int], None,
               "Prefill the prompt in chunks of N tokens (chunked prefill): one forward step "
               "each; activation memory of one chunk."),
    SetupField("tp", int, 1, "Tensor-parallel devices, 1..1024."),
    SetupField("pp", int, 1, "Pipeline stages, 1..1024."),
    SetupField("ep", int, 1, "Expert-parallel devices (MoE; divides tp x dp-attention), "
               "1..1024."),
    SetupField("dp", int, 1, "Data-parallel replicas (throughput scales), 1..1000000."),
    SetupField("dp_attention", int, 1,
               "Attention data-parallel groups of tp devices per replica (MoE 'DEP': each "
               "group its own batch and KV cache, experts over all tp x N devices), 1..1024.",
               web=False),
    SetupField("gpus_per_node", Optional[int], None,
               "Devices per NVLink domain (default: the device's own, 8 on HGX boards, 72 in "
               "an NVL72 rack); larger groups use the network.", web=False),
    SetupField("nodes", Optional[int], None,
               "Spread each replica over this many nodes (sets devices per node).", web=False),
    SetupField("microbatches", Optional[int], None, "Pipeline micro-batches (default: pp).",
               web=False),
    SetupField("overlap", bool, False, "Hide collectives behind matmuls.",
               ("--overlap/--no-overlap",), web=False),
    SetupField("allreduce", str, "auto", "All-reduce algorithm: auto, ring, tree, oneshot, "
               "twoshot.", web=False),
    SetupField("offload_weights", float, 0.0, "Fraction of weights in host memory [0, 1].",
               web=False),
    SetupField("offload_kv", float, 0.0, "Fraction of KV cache in host memory [0, 1].",
               web=False),
    SetupField("host_bw", Optional[float], None,
               "Host link bytes/s per direction (default: half the device's PCIe).", web=False),
    SetupField("engine", Optional[str], None,
               "Serving engine (`llmroofline engines`): default (calibrated to the shipped "
               "measurements), ideal (bare roofline), trtllm-0.8, lmdeploy-0.1, vllm; or an "
               "engine/profile .toml (CLI only).", ("--engine", "-e")),
    SetupField("profile", Optional[str], None,
               "Older spelling: only the kernel half (efficiency entries) of this engine or of "
               "a .toml from `calibrate`, keeping engine's scheduler facts.", ("--profile", "-p")),
)}


def setup_kwargs(setup: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`resolve` (and ``analyze``) from declared setup fields
    (missing ones take their declared defaults). ``nodes`` spreads each replica's tp x pp
    devices over that many nodes: it sets the devices per node, so larger collectives
    cross the network."""
    v = {k: setup.get(k, f.default) for k, f in SETUP_FIELDS.items()}
    unknown = sorted(set(setup) - set(SETUP_FIELDS))
    if unknown:
        raise InputError(f"setup: unknown field(s) {', '.join(unknown)}")
    tp, pp, gpn = v["tp"], v["pp"], v["gpus_per_node"]
    per_replica = tp * pp * v["dp_attention"]
    if v["nodes"] is not None:
        if not 1 <= v["nodes"] <= per_replica:
            raise InputError(f"nodes must be in [1, tp x pp x dp_attention = {per_replica}], "
                             f"got {v['nodes']}")
        gpn = -(-per_replica // v["nodes"])
    layout = Layout(tp=tp, pp=pp, ep=v["ep"], dp=v["dp"], dp_attention=v["dp_attention"],
                    gpus_per_node=gpn,
                    microbatches=v["microbatches"], overlap=v["overlap"],
                    allreduce=v["allreduce"], offload_weights=v["offload_weights"],
                    offload_kv=v["offload_kv"], host_bw_bytes_s=v["host_bw"])
    kw = dict(quant=v["quant"], wbits=v["wbits"], abits=v["abits"], kvbits=v["kvbits"],
              flash=v["flash"], layout=layout, engine=v["engine"], profile=v["profile"])
    if v["cuda_graphs"]:
        kw["cuda_graphs"] = True
    if v["prefill_chunk"] is not None:   # analyze-based commands (the simulator chunks itself)
        kw["prefill_chunk"] = v["prefill_chunk"]
    return kw
