"""Running a real model: prefill and a manual decode loop on a static KV cache, timed.

One *generation* (what ``time_generation`` times):

1. ``cache.reset()`` (untimed): the ``StaticCache`` holds ``input_len + output_len``
   slots per sequence, allocated once, so no step copies or grows it (transformers' default
   dynamic cache concatenates every step, which costs 2-8x at long contexts).
2. prefill: one forward of ``batch x input_len`` tokens with ``logits_to_keep=1`` plus the
   greedy pick of the first token; its time is the measured TTFT.
3. ``output_len - 1`` decode steps: one token per sequence, logits, greedy pick. The mean
   step is the measured TPOT (the first output token comes from the prefill, as in the
   engine's definitions).

Everything runs under ``torch.inference_mode``. A manual loop is used rather than
``model.generate``, which adds 1.5-3 ms of Python per token on a CPU. Repeats follow one
untimed warm-up generation; callers take medians.

``profile_shares`` runs one prefill and a few decode steps under ``torch.profiler`` and
splits the wall time into matmuls, attention, other kernels ("elementwise": norms,
activations, rotary, cache writes, embedding, greedy pick) and framework time outside
any operator (Python modules, dispatch, allocation); see :func:`classify`.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from ..probe.timing import Clock, median

CLASSES = ("matmul", "attention", "elementwise", "framework")


@dataclass
class Timings:
    """Samples of one workload: prefill seconds per repeat, decode step seconds per repeat.

    ``tpot_s`` is the mean over step positions of each position's median over repeats:
    the mean keeps the definition (the KV length grows along the steps), the median per
    position drops steps a neighbour on a shared machine preempted.
    """

    prefill_s: list[float] = field(default_factory=list)
    step_s: list[list[float]] = field(default_factory=list)   # [repeat][step]
    steps: int = 0

    @property
    def ttft_s(self) -> float:
        return median(self.prefill_s)

    @property
    def tpot_s(self) -> float:
        if not self.steps:
            return float("nan")
        return sum(median(col) for col in zip(*self.step_s)) / self.steps


class Generator:
    """A model, a static cache and fixed inputs for one (batch, input, output) workload."""

    def __init__(self, model, batch: int, input_len: int, output_len: int, device: str = "cpu",
                 seed: int = 0):
        import torch
        from transformers import StaticCache
        self.model, self.device = model, device
        self.batch, self.input_len, self.output_len = batch, input_len, output_len
        g = torch.Generator().manual_seed(seed)
        vocab = model.config.get_text_config().vocab_size
        self.ids = torch.randint(0, vocab, (batch, input_len), generator=g).to(device)
        self.cache = StaticCache(config=model.config, max_cache_len=input_len + output_len)
        self.prefill_pos = torch.arange(input_len, device=device)
        self.step_pos = [torch.tensor([input_len + s], device=device) for s in range(output_len - 1)]
        self.clock = Clock(device)

    def prefill(self):
        out = self.model(input_ids=self.ids, past_key_values=self.cache, use_cache=True,
                         logits_to_keep=1, cache_position=self.prefill_pos)
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def step(self, tok, s: int):
        out = self.model(input_ids=tok, past_key_values=self.cache, use_cache=True,
                         cache_position=self.step_pos[s])
        return out.logits[:, -1].argmax(-1, keepdim=True)

    def generation(self, steps: int | None = None) -> tuple[float, list[float]]:
        """(prefill seconds, [seconds of each decode step]) of one timed generation."""
        import torch
        steps = self.output_len - 1 if steps is None else min(steps, self.output_len - 1)
        with torch.inference_mode():
            self.cache.reset()
            self.clock.sync()
            t_pre, tok = self.clock.once(self.prefill)
            times = []
            for s in range(steps):
                t, tok = self.clock.once(lambda: self.step(tok, s))
                times.append(t)
        return t_pre, times


def time_generation(gen: Generator, repeats: int = 3, warmup: int = 1,
                    steps: int | None = None) -> Timings:
    """Medians-ready samples of ``repeats`` generations after ``warmup`` untimed ones."""
    for _ in range(warmup):
        gen.generation(steps=min(steps or 4, 4) if steps != 0 else 0)
    t = Timings()
    for _ in range(repeats):
        pre, times = gen.generation(steps)
        t.prefill_s.append(pre)
        if times:
            t.step_s.append(times)
            t.steps = len(times)
    return t


@contextlib.contextmanager
def _quiet_stderr_fd():
    """Silence libkineto's 'profiler_start/stop' lines written straight to fd 2."""
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover - no fd 2
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def classify(name: str) -> str:
    """Operator class of a profiler event (aten op on CPU, kernel name on CUDA)."""
    n = name.lower()
    if any(k in n for k in ("scaled_dot_product", "flash", "attention", "fmha", "efficient_attn")):
        return "attention"
    if any(k in n for k in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul",
                            "aten::linear", "aten::_addmm", "gemm", "gemv", "cutlass", "xmma",
                            "mkldnn_linear", "onednn", "_grouped_mm")):
        return "matmul"
    return "elementwise"


def _shares_from(prof, wall_s: float, cuda: bool) -> dict[str, float]:
    """Seconds per class of one profiled region; framework = wall - sum of self times."""
    sums = dict.fromkeys(CLASSES, 0.0)
    for e in prof.key_averages():
        if cuda:
            t = getattr(e, "self_device_time_total", 0.0) * 1e-6
            if not t:
                continue
        else:
            t = e.self_cpu_time_total * 1e-6
        sums[classify(e.key)] += t
    busy = sum(sums.values())
    sums["framework"] = max(wall_s - busy, 0.0)
    return sums


def profile_shares(gen: Generator, decode_steps: int = 8) -> dict[str, dict[str, float]]:
    """Fractions of measured time per class for the prefill and the decode steps."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    cuda = gen.clock.cuda
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    out = {}
    with torch.inference_mode():
        gen.cache.reset()
        with _quiet_stderr_fd(), profile(activities=acts) as p:
            gen.clock.sync()
            t0 = time.perf_counter()
            tok = gen.prefill()
            gen.clock.sync()
            wall = time.perf_counter() - t0
        out["prefill"] = _shares_from(p, wall, cuda)
        n = min(decode_steps, gen.output_len - 1)
        if n > 0:
            with _quiet_stderr_fd(), profile(activities=acts) as p:
                gen.clock.sync()
                t0 = time.perf_counter()
                for s in range(n):
                    tok = gen.step(tok, s)
                gen.clock.sync()
                wall = time.perf_counter() - t0
            out["decode"] = _shares_from(p, wall, cuda)
    fractions = {}
    for phase, sums in out.items():
        total = sum(sums.values()) or 1.0
        fractions[phase] = {k: v / total for k, v in sums.items()}
    return fractions
