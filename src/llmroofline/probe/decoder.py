"""A random-weight Llama-like decoder in plain torch: decode steps eager or as a CUDA graph.

Used by ``probe`` for (a) the framework-overhead line on a CPU when transformers is not
loaded (a ``--quick`` run would spend 4-6 s importing it) and (b) the decode loop on CUDA,
eager and captured with ``torch.cuda.CUDAGraph``, so launch overhead and what CUDA graphs
save are measured on the same kernels.

One step for ``batch`` sequences (one new token each) at cache position ``pos``:
embedding; per layer: RMSNorm, fused QKV projection (``H + 2 Hkv`` heads x ``d``), the new
K and V written into a static cache of ``max_len`` slots (``index_copy_``), SDPA of the
query against all slots with a mask ``slot <= pos`` (static shapes, like transformers'
StaticCache; grouped-query heads through ``enable_gqa``), output projection and residual,
RMSNorm, fused gate/up projection, SiLU x up, down projection and residual; final norm,
``lm_head`` and the greedy pick. All shapes are fixed, so the step can be captured once
and replayed: the graph reads the token and position from static buffers it then updates.

Weights are small uniform random values in the model dtype (values do not change speed).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class DecoderShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    head_dim: int = 0      # 0: hidden / heads

    @property
    def d(self) -> int:
        return self.head_dim or self.hidden // self.heads

    def hf_config(self, max_len: int) -> dict:
        """The same model as a Hugging Face Llama config (for the engine's prediction)."""
        return {"model_type": "llama", "hidden_size": self.hidden, "intermediate_size": self.ffn,
                "num_attention_heads": self.heads, "num_key_value_heads": self.kv_heads,
                "num_hidden_layers": self.layers, "vocab_size": self.vocab, "head_dim": self.d,
                "max_position_embeddings": max(max_len, 16), "tie_word_embeddings": False,
                "rms_norm_eps": 1e-5}


TINY = DecoderShape(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=256)


class Decoder:
    """Weights, a static KV cache and the step function (module docstring)."""

    def __init__(self, shape: DecoderShape, batch: int, max_len: int, dtype, device: str,
                 seed: int = 0):
        import torch
        if shape.heads % shape.kv_heads:
            raise InputError(f"heads must be a multiple of kv_heads, got {shape.heads} and "
                             f"{shape.kv_heads}")
        self.torch, self.shape, self.batch, self.max_len = torch, shape, batch, max_len
        self.device, self.dtype = device, dtype
        g = torch.Generator().manual_seed(seed)
        s, d = shape, shape.d

        def w(*size):
            return ((torch.rand(*size, generator=g) - 0.5) * 0.02).to(dtype=dtype, device=device)
        self.emb = w(s.vocab, s.hidden)
        self.lm_head = w(s.vocab, s.hidden)
        self.norm = torch.ones(s.hidden, dtype=dtype, device=device)
        self.layers = [dict(qkv=w((s.heads + 2 * s.kv_heads) * d, s.hidden),
                            o=w(s.hidden, s.heads * d), gu=w(2 * s.ffn, s.hidden),
                            down=w(s.hidden, s.ffn)) for _ in range(s.layers)]
        self.k = [torch.zeros(batch, s.kv_heads, max_len, d, dtype=dtype, device=device)
                  for _ in range(s.layers)]
        self.v = [torch.zeros_like(k) for k in self.k]
        self.slots = torch.arange(max_len, device=device)
        self.tok = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(1, dtype=torch.long, device=device)
        self.graph = None
        self.graph_out = None

    def reset(self, pos: int) -> None:
        """Start decoding at cache position ``pos`` (the cache content is irrelevant)."""
        self.pos.fill_(pos)
        self.tok.zero_()

    def step(self, tok, pos):
        """One decode step (module docstring); returns the next tokens (batch, 1)."""
        torch = self.torch
        F = torch.nn.functional
        s, d, b = self.shape, self.shape.d, self.batch
        x = F.embedding(tok, self.emb)                       # (b, 1, hidden)
        mask = (self.slots <= pos).view(1, 1, 1, -1)
        hq, hk = s.heads * d, s.kv_heads * d
        for layer, kc, vc in zip(self.layers, self.k, self.v):
            y = F.rms_norm(x, (s.hidden,), self.norm, 1e-5)
            qkv = F.linear(y, layer["qkv"])
            q = qkv[..., :hq].view(b, 1, s.heads, d).transpose(1, 2)
            k = qkv[..., hq:hq + hk].view(b, 1, s.kv_heads, d).transpose(1, 2)
            v = qkv[..., hq + hk:].view(b, 1, s.kv_heads, d).transpose(1, 2)
            kc.index_copy_(2, pos, k)
            vc.index_copy_(2, pos, v)
            a = F.scaled_dot_product_attention(q, kc, vc, attn_mask=mask,
                                               enable_gqa=s.heads != s.kv_heads)
            x = x + F.linear(a.transpose(1, 2).reshape(b, 1, hq), layer["o"])
            y = F.rms_norm(x, (s.hidden,), self.norm, 1e-5)
            gate, up = F.linear(y, layer["gu"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(gate) * up, layer["down"])
        logits = F.linear(F.rms_norm(x, (s.hidden,), self.norm, 1e-5), self.lm_head)
        return logits.argmax(-1)

    def eager_step(self):
        """Step from the static buffers and advance them (eager)."""
        out = self.step(self.tok, self.pos)
        self.tok.copy_(out)
        self.pos.add_(1)
        return out

    def capture(self, warmup: int = 3) -> None:
        """Capture one step as a CUDA graph (CUDA only; warm-up on a side stream first)."""
        torch = self.torch
        if not str(self.device).startswith("cuda"):
            raise InputError("cuda_graphs: CUDA graphs need --device cuda")
        start = int(self.pos.item())
        st = torch.cuda.Stream()
        st.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(st), torch.inference_mode():
            for _ in range(warmup):
                self.step(self.tok, self.pos)
        torch.cuda.current_stream().wait_stream(st)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.graph_out = self.step(self.tok, self.pos)
        self.reset(start)

    def graph_step(self):
        """Replay the captured step and advance the buffers."""
        self.graph.replay()
        self.tok.copy_(self.graph_out)
        self.pos.add_(1)
        return self.graph_out


def time_steps(dec: Decoder, clock, steps: int, start: int, graphs: bool = False) -> list[float]:
    """Seconds of each of ``steps`` decode steps from cache position ``start``."""
    torch = dec.torch
    if start + steps > dec.max_len:
        raise InputError(f"steps: {start} + {steps} exceeds the cache of {dec.max_len} slots")
    fn = dec.graph_step if graphs else dec.eager_step
    out = []
    with torch.inference_mode():
        dec.reset(start)
        clock.sync()
        for _ in range(steps):
            out.append(clock.once(fn)[0])
    return out
