"""``llmroofline probe``: measure this machine's own roofline and write a device file.

torch is imported only when a probe runs (``pip install "llmroofline[bench]"``).
See :mod:`llmroofline.probe.measure` for what is measured and :mod:`.fit` for how the
efficiency block is fitted.
"""

from .measure import ProbeResult, compare_datasheet, match_catalog, probe, probe_header

__all__ = ["probe", "ProbeResult", "match_catalog", "compare_datasheet", "probe_header"]
