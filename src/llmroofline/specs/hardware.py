"""Accelerator description: datasheet peaks, memory, links, and an efficiency block.

The built-in catalog is one data file, ``data/hardware/devices.toml``; a user device is
a TOML or YAML file with the same fields (see ``docs/hardware.md``). Peaks are datasheet
values (dense, decimal units); what real kernels reach is the :class:`Efficiency` block,
whose default is the ideal roofline (100 % of peak, no launch overhead); without such a
block the calibrated profile of the device family applies (``specs/profile.py``).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError, suggest
from .profile import Efficiency, efficiency_from_dict, efficiency_to_dict

DEFAULT_HARDWARE = "a100-sxm-80gb"
DEFAULT_NVLINK_DOMAIN = 8   # devices per node when the catalog says nothing (HGX, 8-GPU server)
# Per-hop latency of one collective step: NVLink-class fabric, PCIe (through the host's root
# complex or a PCIe switch, NCCL's measured small-message latency is ~2-3x NVLink's).
NVLINK_LATENCY_S = 2e-6
PCIE_LATENCY_S = 5e-6
MIB = 2 ** 20

# Compute dtypes with a tensor/vector peak in the data file (TFLOPS or TOPS, dense).
DTYPE_FIELDS = {
    "fp32": "fp32_tflops", "tf32": "tf32_tflops", "fp16": "fp16_tflops",
    "bf16": "bf16_tflops", "fp8": "fp8_tflops", "int8": "int8_tops", "fp4": "fp4_tflops",
}


@dataclass(frozen=True)
class HardwareSpec:
    """One accelerator. Bytes and FLOP/s in SI units (1 GB = 1e9 bytes)."""

    id: str
    name: str
    memory_bytes: float
    mem_bw_bytes_s: float
    peak_flops: dict[str, float]          # dtype -> FLOP/s (dense); absent dtype = no such unit
    vendor: str = ""
    architecture: str = ""
    family: str = ""
    form_factor: str = ""
    memory_type: str = ""
    l2_bytes: float | None = None
    sm_count: int | None = None
    boost_clock_mhz: float | None = None
    scaleup_link: str = ""
    scaleup_bytes_s_bidir: float | None = None
    pcie_bytes_s_bidir: float | None = None
    scaleout_bytes_s: float = 50e9        # per-GPU network bandwidth per direction (400 Gb/s NIC)
    link_latency_s: float | None = None   # per-hop latency of the scale-up link (None: by link type)
    scaleout_latency_s: float = 10e-6
    # Devices of one system that reach each other over the scale-up link: 8 on an HGX
    # board or a PCIe server, 72 in a GB200/GB300 NVL72 rack, 1 for a standalone GH200.
    nvlink_domain: int = DEFAULT_NVLINK_DOMAIN
    # Devices the scale-up link joins inside one node when it does not span the node: 2 for
    # PCIe cards with an NVLink bridge (the bridge pairs two cards); a group of more of the
    # node's devices talks over PCIe. None: the link spans the node.
    scaleup_group: int | None = None
    memory_mib: float | None = None       # capacity as the driver reports it (nvidia-smi MiB)
    host_bytes_s_bidir: float | None = None  # host link when it is not PCIe (NVLink-C2C)
    tdp_w: float | None = None
    source: str = ""
    confidence: str = ""
    notes: str = ""
    efficiency: Efficiency = field(default_factory=Efficiency)

    def peak(self, dtype: str) -> float | None:
        return self.peak_flops.get(dtype)

    @property
    def has_nvlink(self) -> bool:
        """An all-to-all scale-up fabric (NVLink/NVSwitch, Infinity Fabric, ICI, RoCE)."""
        return bool(self.scaleup_bytes_s_bidir)

    @property
    def visible_memory_bytes(self) -> float:
        """Capacity the driver exposes (``memory_mib`` x 2^20 bytes) where the catalog
        records it, else the marketed ``memory_bytes``."""
        return self.memory_mib * MIB if self.memory_mib else self.memory_bytes

    def scaleup_bytes_s(self) -> float | None:
        """Per-direction bandwidth between devices of one node: scale-up link, else PCIe."""
        bidir = self.scaleup_bytes_s_bidir or self.pcie_bytes_s_bidir
        return bidir / 2 if bidir else None

    def scaleup_latency_s(self) -> float:
        """Per-hop latency inside a node: 2 us over NVLink-class links, 5 us over PCIe."""
        if self.link_latency_s is not None:
            return self.link_latency_s
        return NVLINK_LATENCY_S if self.has_nvlink else PCIE_LATENCY_S

    def pcie_bytes_s(self) -> float | None:
        """Per-direction PCIe bandwidth between two devices of a node (half the host link's
        bidirectional figure): the link of a group larger than ``scaleup_group``."""
        return self.pcie_bytes_s_bidir / 2 if self.pcie_bytes_s_bidir else None

    def with_efficiency(self, **kw: float) -> HardwareSpec:
        return replace(self, efficiency=replace(self.efficiency, **kw))


_REQUIRED = ("name", "memory_gb", "mem_bw_gb_s")
_NUMERIC = ("memory_gb", "mem_bw_gb_s", "l2_mb", "sm_count", "boost_clock_mhz",
            "scaleup_gb_s_bidir", "pcie_gb_s_bidir", "scaleout_gb_s", "link_latency_us",
            "scaleout_latency_us", "tdp_w", "memory_mib", "host_gb_s_bidir", "nvlink_domain",
            *DTYPE_FIELDS.values())
NVLINK_DOMAIN_MAX = 1024
# Physical bounds of every numeric field in its own unit (GB, GB/s, TFLOP/s, W, MHz, us):
# 1e-6 .. 1e7 keeps every product in the engine finite (1e308 GB would be infinity).
_MIN, _MAX = 1e-6, 1e7
_TEXT = ("name", "vendor", "architecture", "family", "form_factor", "memory_type",
         "scaleup_link", "source", "confidence", "notes")


def from_dict(dev_id: str, d: dict[str, Any], where: str = "") -> HardwareSpec:
    """Build a :class:`HardwareSpec` from the data-file fields (units in the key names)."""
    where = where or f"hardware {dev_id}"
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a table of fields")
    for k in _REQUIRED:
        if k not in d:
            raise InputError(f"{where}: missing field '{k}' (required: {', '.join(_REQUIRED)})")
    known = set(_NUMERIC) | set(_TEXT) | {"efficiency", "id", "aliases", "scaleup_group"}
    for k in d:
        if k not in known:
            raise InputError(f"{where}: unknown field '{k}'" + suggest(k, known))
    for k in _NUMERIC:
        if k in d:
            v = d[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not _MIN <= v <= _MAX:
                raise InputError(f"{where}: field '{k}' must be a positive number in [{_MIN:g}, {_MAX:g}] "
                                 f"(in the unit its name gives), got {v!r}")
    dom = d.get("nvlink_domain", DEFAULT_NVLINK_DOMAIN)
    if not isinstance(dom, int) or not 1 <= dom <= NVLINK_DOMAIN_MAX:
        raise InputError(f"{where}: field 'nvlink_domain' must be an integer in "
                         f"[1, {NVLINK_DOMAIN_MAX}], got {dom!r}")
    group = d.get("scaleup_group")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int)
                              or not 1 <= group <= dom):
        raise InputError(f"{where}: field 'scaleup_group' must be an integer in [1, {dom}] "
                         f"(at most nvlink_domain), got {group!r}")
    peaks = {dt: float(d[f]) * 1e12 for dt, f in DTYPE_FIELDS.items() if f in d}
    if not peaks:
        raise InputError(f"{where}: needs at least one compute peak field "
                         f"({', '.join(DTYPE_FIELDS.values())})")
    efficiency = efficiency_from_dict(d.get("efficiency", {}) or {}, f"{where} [efficiency]")

    def opt(k: str, scale: float = 1.0) -> float | None:
        return float(d[k]) * scale if k in d else None

    return HardwareSpec(
        id=dev_id,
        memory_bytes=float(d["memory_gb"]) * 1e9,
        mem_bw_bytes_s=float(d["mem_bw_gb_s"]) * 1e9,
        peak_flops=peaks,
        l2_bytes=opt("l2_mb", 1e6),
        sm_count=int(d["sm_count"]) if "sm_count" in d else None,
        boost_clock_mhz=opt("boost_clock_mhz"),
        scaleup_bytes_s_bidir=opt("scaleup_gb_s_bidir", 1e9),
        pcie_bytes_s_bidir=opt("pcie_gb_s_bidir", 1e9),
        scaleout_bytes_s=opt("scaleout_gb_s", 1e9) or 50e9,
        link_latency_s=opt("link_latency_us", 1e-6),
        scaleout_latency_s=opt("scaleout_latency_us", 1e-6) or 10e-6,
        nvlink_domain=dom,
        scaleup_group=group,
        memory_mib=opt("memory_mib"),
        host_bytes_s_bidir=opt("host_gb_s_bidir", 1e9),
        tdp_w=opt("tdp_w"),
        efficiency=efficiency,
        **{k: str(d.get(k, "")) for k in _TEXT},
    )


def to_dict(hw: HardwareSpec) -> dict[str, Any]:
    """Inverse of :func:`from_dict` (data-file units), for ``--json`` and device files."""
    out: dict[str, Any] = {"id": hw.id}
    for k in _TEXT:
        if getattr(hw, k):
            out[k] = getattr(hw, k)
    out["memory_gb"] = float(f"{hw.memory_bytes / 1e9:.12g}")
    out["mem_bw_gb_s"] = float(f"{hw.mem_bw_bytes_s / 1e9:.12g}")
    for dt, f in DTYPE_FIELDS.items():
        if dt in hw.peak_flops:
            out[f] = float(f"{hw.peak_flops[dt] / 1e12:.12g}")
    for k, attr, scale in (("l2_mb", "l2_bytes", 1e6), ("sm_count", "sm_count", 1),
                           ("boost_clock_mhz", "boost_clock_mhz", 1),
                           ("scaleup_gb_s_bidir", "scaleup_bytes_s_bidir", 1e9),
                           ("pcie_gb_s_bidir", "pcie_bytes_s_bidir", 1e9), ("tdp_w", "tdp_w", 1),
                           ("scaleout_gb_s", "scaleout_bytes_s", 1e9),
                           ("link_latency_us", "link_latency_s", 1e-6),
                           ("scaleout_latency_us", "scaleout_latency_s", 1e-6),
                           ("memory_mib", "memory_mib", 1),
                           ("host_gb_s_bidir", "host_bytes_s_bidir", 1e9)):
        v = getattr(hw, attr)
        if v is not None:
            # 12 significant digits drop the binary noise of the unit round trip (1e-5 / 1e-6)
            out[k] = float(f"{v / scale:.12g}") if scale != 1 else v
    if hw.nvlink_domain != DEFAULT_NVLINK_DOMAIN:
        out["nvlink_domain"] = hw.nvlink_domain
    if hw.scaleup_group is not None:
        out["scaleup_group"] = hw.scaleup_group
    if not hw.efficiency.is_ideal:
        out["efficiency"] = efficiency_to_dict(hw.efficiency)
    return out


@lru_cache(maxsize=1)
def _catalog_raw() -> dict[str, dict[str, Any]]:
    path = resources.files("llmroofline") / "data" / "hardware" / "devices.toml"
    return tomllib.loads(path.read_text())["devices"]


def hardware_ids() -> list[str]:
    return list(_catalog_raw())


def _norm_id(name: str) -> str:
    return re.sub(r"[\s_]+", "-", name.strip().lower())


@lru_cache(maxsize=1)
def hardware_aliases() -> dict[str, str]:
    """Alias (normalized) -> catalog id, from the ``aliases`` lists of devices.toml."""
    return {_norm_id(a): dev for dev, d in _catalog_raw().items() for a in d.get("aliases", [])}


@lru_cache(maxsize=None)
def _builtin(dev_id: str) -> HardwareSpec:
    return from_dict(dev_id, _catalog_raw()[dev_id])


def load_hardware(name_or_path: str | os.PathLike | HardwareSpec = DEFAULT_HARDWARE) -> HardwareSpec:
    """Resolve a built-in device id (case-insensitive) or a TOML/YAML device file."""
    if isinstance(name_or_path, HardwareSpec):
        return name_or_path
    name = str(name_or_path)
    key = _norm_id(name)
    if key in _catalog_raw():
        return _builtin(key)
    if key in hardware_aliases():
        return _builtin(hardware_aliases()[key])
    p = Path(name)
    from ..safeio import exists
    if p.suffix.lower() in (".toml", ".yaml", ".yml") or exists(p):
        return load_hardware_file(p)
    raise InputError(f"hardware: unknown device '{name}'"
                     + suggest(key, [*hardware_ids(), *hardware_aliases()])
                     + "; run `llmroofline hardware` for the list, or pass a .toml/.yaml file")


def load_hardware_file(path: Path) -> HardwareSpec:
    """Read a user device file: a flat table of the catalog fields (TOML or YAML)."""
    from ..safeio import read_text
    text = read_text(path, "hardware", what="device id or a .toml/.yaml file")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except Exception as e:  # parser errors of either format
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"hardware: cannot parse {path}: {msg}") from None
    if isinstance(data, dict) and "devices" in data and isinstance(data["devices"], dict) \
            and len(data["devices"]) == 1:
        (dev_id, data), = data["devices"].items()
    else:
        dev_id = str((data or {}).get("id", path.stem)) if isinstance(data, dict) else path.stem
    return from_dict(dev_id, data, where=f"hardware file {path}")

