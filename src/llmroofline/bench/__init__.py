"""``llmroofline bench``: a real transformer on this machine, measured beside the engine.

torch and transformers are imported only when a bench runs (``pip install
"llmroofline[bench]"``). :mod:`.model` shrinks configs and builds random-weight models,
:mod:`.run` times prefill and decode on a static cache and profiles them, :mod:`.core`
predicts the same run with the engine and diagnoses the regime by scaling the work.
"""

from .core import BenchResult, Diagnosis, bench, diagnose, write_csv
from .model import shrink_config

__all__ = ["bench", "BenchResult", "Diagnosis", "diagnose", "write_csv", "shrink_config"]
