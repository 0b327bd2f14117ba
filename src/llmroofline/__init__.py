"""llmroofline: how fast will this LLM run on that accelerator, and why.

Public API::

    from llmroofline import analyze, load_model, load_hardware
    a = analyze("llama-2-7b", "a100-sxm-80gb", batch=16, input_len=2048, output_len=256)
    a.ttft_s, a.tpot_s, a.throughput_tok_s, a.memory.fits, a.decode.to_dataframe()
"""

from .errors import InputError
from .phases import Analysis, analyze
from .specs.catalog import load_model
from .specs.hardware import HardwareSpec, load_hardware
from .specs.model import ModelSpec, from_hf_config, param_count
from .specs.precision import Precision

__all__ = ["analyze", "Analysis", "load_model", "load_hardware", "ModelSpec", "HardwareSpec",
           "Precision", "InputError", "from_hf_config", "param_count"]
__version__ = "0.1.0"
