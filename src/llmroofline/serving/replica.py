"""One serving replica: its queue, running batch and paged KV cache, iteration by iteration.

State of a request: ``gen`` tokens emitted, ``comp`` tokens in its KV cache. It must
compute ``target = input_len + gen`` tokens before emitting the next one: a prompt of
``I`` tokens emits token 1 when ``comp`` reaches ``I``; from then on every iteration feeds
the last emitted token (``q = 1``) and emits the next. A request is done when
``gen = output_len``; its KV cache holds at most ``input_len + output_len - 1`` tokens.

Continuous batching (``policy="continuous"``, vLLM / TensorRT-LLM in-flight batching), per
iteration:

1. every running request with one token left to compute is a decode row (oldest first);
   if its next token needs a new KV block and none is free, the most recently admitted
   running request is preempted: by **recompute** (its blocks are freed; it goes back to
   the front of the queue, to re-prefill its prompt plus the tokens it had generated) or by
   **swap** (its KV cache is copied to host memory over the host link and its blocks
   freed; it is swapped back in before any new request is admitted, and continues where it
   stopped). Swap traffic is priced at ``kv bytes / host link bandwidth`` (per direction;
   the device's PCIe by default) and added to the iteration that moves it, as vLLM's
   blocking swap does. Host swap space is unlimited unless ``swap_gb`` is given; a victim
   that does not fit there is recomputed;
2. running requests still in prefill get chunks from the token budget ``max_tokens``
   (whole prompts only, when ``chunked=False``);
3. swapped-out requests are swapped back in, then queued requests are admitted
   first-come first-served, while the batch has fewer than ``max_batch`` requests, the
   budget has tokens left, and the KV blocks of the request's whole prompt (``reserve=
   "full"``: prompt + output, TensorRT-LLM's guaranteed-no-evict) are free (keeping a
   ``watermark`` share of the blocks spare);
4. the iteration's time is ``IterationCost.time`` of its rows plus the swap time plus
   ``step_cpu_s``; tokens are emitted at its end. A pure-decode iteration of B rows with
   ``cuda_graph_sizes`` is priced with its token and row ops at the next captured size
   (``SchedulerConfig.padded_rows``), eagerly above the largest.

Without mixing (``mix_prefill=False``, SGLang): when prefill work is waiting (a running
prompt with more than one token to compute, or a request that can be admitted), the
iteration runs only prefill rows with the whole ``max_tokens`` budget; the lockstep decode
rows do not advance (their iteration counter ``_it`` stands still, so their stored bases
stay valid) and their next inter-token gap includes the prefill iterations.

Static batching (``policy="static"``): when idle, the engine takes up to ``max_batch``
queued requests whose full KV cache (``input + output - 1`` tokens each) fits, prefills
them in one forward, and decodes all rows until the longest is done; finished rows keep
costing their slot (padding), as in a static ``generate`` call.

Paged KV memory: ``block_size`` tokens per block; capacity ``kv_fraction x (device memory
- weights - activation reserve of a max_tokens iteration)`` per device.

Speed. A request that emitted a token at the end of the previous iteration and has not
finished is a *lockstep* decode row: until it finishes or is preempted, every iteration
it feeds one token, emits one, and takes a new KV block when its context reaches a block
boundary (unless ``reserve="full"`` reserved them all). So it is not updated per
iteration: it is stored as ``base = tokens computed - iterations run`` (``_lock``), and
what an iteration needs of all of them is kept as running totals: their number, the sum
of their contexts (the attention features without sliding windows), how many reach a
block boundary this iteration (counted per ``base mod block_size``), which finish now (a
heap by finishing iteration). An iteration then costs Python work only for its other rows
(prefill chunks, admissions, first tokens; ``_pre``) and its finishes, whatever the batch
size. Stretches of lockstep-only iterations (nothing admissible; 8 or more, 2 with
sliding windows) are advanced in one vectorized step up to the next event (an arrival
that could be admitted, the first finish, or the first iteration that would need more KV
blocks than exist); within them the iteration times come from
:meth:`IterationCost.decode_run`. A preemption writes the lockstep rows out
(``_unlock``), preempts as described, and reads the survivors back (``_relock``).
``fast=False`` steps every iteration (same results up to rounding).
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from collections import deque
from heapq import heappop, heappush

import numpy as np

from ..errors import InputError
from .config import SchedulerConfig
from .cost import IterationCost
from .result import IterationLog


class Replica:
    """One replica's scheduler state; :meth:`add` routes a request to it, :meth:`advance`
    runs its iterations that start before a time."""

    def __init__(self, cost: IterationCost, cfg: SchedulerConfig, total_blocks: int,
                 fast: bool = True, swap_s_per_token: float = 0.0,
                 swap_blocks: int | None = None) -> None:
        self.cost, self.cfg, self.fast = cost, cfg, fast
        self.bs = cfg.block_size
        self.total_blocks = total_blocks
        self.free = total_blocks
        self.watermark = int(cfg.watermark * total_blocks)
        self.swap = cfg.preemption == "swap"
        self.swap_s = swap_s_per_token
        self.swap_blocks = swap_blocks
        self.host_used = 0
        self.full = cfg.reserve == "full"
        self.now = 0.0
        self.kv_tokens = 0
        self.done = 0
        self.pi = 0
        self.concurrency = 0
        self.next_release = 0
        self.n = 0                              # requests routed here
        # per request, indexed by local id (Python lists: the scheduler reads and writes
        # one request at a time). comp, gen, blocks and last_emit are stale for lockstep
        # rows (see the module docstring) until ``_unlock``.
        self.gid: list[int] = []
        self.arr: list[float] = []
        self.inp: list[int] = []
        self.out: list[int] = []
        self.gen: list[int] = []
        self.comp: list[int] = []
        self.blocks: list[int] = []
        self.last_emit: list[float] = []
        self.hblocks: list[int] = []
        self.first_sched: list[float] = []
        self.first_tok: list[float] = []
        self.finish: list[float] = []
        self.npre: list[int] = []
        self.nswap: list[int] = []
        self.finish_times: list[float] = []     # nondecreasing (for the router)
        self.ft_times: list[float] = []         # first-token times, nondecreasing ...
        self.ft_cum: list[int] = [0]            # ... and the prompt tokens they completed
        self.prompt_routed = 0                  # prompt tokens routed here (to compute)
        self.metric = "prompt"                  # router load: see router.route
        self.pending: list[int] = []
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        # the running batch: all of it in admission order (the preemption order), and the
        # rows that are not lockstep decode rows, in admission order
        self._run: dict[int, None] = {}
        self._pre: list[int] = []
        self._it = 0                            # iterations run
        self._lock: dict[int, int] = {}         # lockstep row -> base (comp = base + _it)
        self._sum_base = 0
        self._grow = [0] * self.bs              # lockstep rows per base mod block_size
        self._fin: list[tuple[int, int]] = []   # heap of (_it when done, lockstep row)
        self._grows = not self.full             # "full" reserves every block up front
        # a vectorized stretch costs about as much as 8 stepped iterations, or 2 with
        # sliding windows (their per-row attention features make a stepped one dearer)
        self._min_stretch = 8 if cost.windowless else 2
        self.log = IterationLog()
        # engine behaviours (SchedulerConfig): CPU seconds per iteration, seconds before a
        # request reaches the scheduler, CUDA-graph padding, prefill batches run alone
        self.step_cpu = float(cfg.step_cpu_s)
        self.fixed = float(cfg.request_fixed_s)
        self.graph_sizes = bool(cfg.cuda_graph_sizes)
        self.mix = cfg.mix_prefill
        self._stall = 0.0                       # prefill-only seconds since the last decode
        self.done_ids: list[int] = []           # local ids in the order they finished

    # -- requests -------------------------------------------------------------------------
    def _too_big(self, gid: int, inp: int, out: int) -> InputError:
        return InputError(f"memory: request {gid} needs {inp + out - 1} tokens of KV cache, "
                          f"more than the {self.total_blocks * self.bs} that fit on "
                          f"{self.cost.roof.hw.id}")

    def check_fit(self, gids, inp, out) -> None:
        """InputError for the first request (in the order of ``gids``) whose whole KV cache
        cannot fit in this replica."""
        inp = np.asarray(inp, dtype=np.int64)
        out = np.asarray(out, dtype=np.int64)
        too_big = -(-(inp + out - 1) // self.bs) > self.total_blocks
        if too_big.any():
            k = int(np.argmax(too_big))
            raise self._too_big(int(gids[k]), int(inp[k]), int(out[k]))

    def add(self, gid: int, arrival: float, inp: int, out: int, comp: int = 0, gen: int = 0,
            last_emit: float = math.nan, release: bool = True) -> None:
        """A request reaching this replica at ``arrival`` with ``comp`` tokens of KV cache
        already computed and ``gen`` tokens emitted (a disaggregated decode replica receives
        ``comp = input``, ``gen = 1``). ``release=False``: closed loop, arrival set later."""
        if -(-(inp + out - 1) // self.bs) > self.total_blocks:
            raise self._too_big(gid, inp, out)
        for lst, v in ((self.gid, gid), (self.arr, float(arrival)), (self.inp, inp),
                       (self.out, out), (self.gen, gen), (self.comp, comp),
                       (self.last_emit, last_emit), (self.blocks, 0), (self.hblocks, 0),
                       (self.first_sched, math.nan), (self.first_tok, math.nan),
                       (self.finish, math.nan), (self.npre, 0), (self.nswap, 0)):
            lst.append(v)
        if gen == 0:
            self.prompt_routed += inp
        if release:
            self.pending.append(self.n)
        self.n += 1

    def add_many(self, gids, arrival, inp, out, comp=None, gen=None, last_emit=None,
                 release: bool = True) -> None:
        """:meth:`add` for several requests, in order (arrays; ``None``: the defaults)."""
        m = len(gids)
        inp = np.asarray(inp, dtype=np.int64)
        out = np.asarray(out, dtype=np.int64)
        self.check_fit(gids, inp, out)
        gen = np.zeros(m, dtype=np.int64) if gen is None else np.asarray(gen, dtype=np.int64)
        self.gid += np.asarray(gids, dtype=np.int64).tolist()
        self.arr += np.asarray(arrival, dtype=float).tolist()
        self.inp += inp.tolist()
        self.out += out.tolist()
        self.gen += gen.tolist()
        self.comp += [0] * m if comp is None else np.asarray(comp, dtype=np.int64).tolist()
        self.last_emit += ([math.nan] * m if last_emit is None
                           else np.asarray(last_emit, dtype=float).tolist())
        for lst, v in ((self.blocks, 0), (self.hblocks, 0), (self.first_sched, math.nan),
                       (self.first_tok, math.nan), (self.finish, math.nan), (self.npre, 0),
                       (self.nswap, 0)):
            lst += [v] * m
        self.prompt_routed += int(inp[gen == 0].sum())
        if release:
            self.pending += range(self.n, self.n + m)
        self.n += m

    def send(self, gid: int, arrival: float, inp: int, out: int, comp: int = 0, gen: int = 0,
             last_emit: float = math.nan) -> None:
        """:meth:`add` for a request sent while the simulation runs (serving/disagg.py):
        it joins the pending arrivals in time order, wherever ``arrival`` falls."""
        self.add(gid, arrival, inp, out, comp, gen, last_emit, release=False)
        insort(self.pending, self.n - 1, lo=self.pi, key=self.arr.__getitem__)

    def next_event_s(self) -> float:
        """When this replica runs its next iteration as things stand: ``now`` with work
        to do, the next pending arrival when idle, infinity with nothing routed here."""
        if self.done >= self.n:
            return math.inf
        if self._run or self.waiting or self.swapped:
            return self.now
        if self.pi < len(self.pending):
            return max(self.now, self.arr[self.pending[self.pi]])
        return math.inf

    def set_closed_loop(self, concurrency: int, starts_s=None, think_s=None) -> None:
        """Closed loop over the requests added with ``release=False``: the first
        ``concurrency`` are sent at ``starts_s`` (nondecreasing; default: all at t = 0),
        each finish sends the next at once. A request reaches the scheduler
        ``request_fixed_s`` after it is sent (``arr`` holds that time here). ``think_s``
        (per local request): seconds from the previous finish (the start) to the send."""
        n = self.n
        self.concurrency = min(concurrency, n)
        self.think = [0.0] * n if think_s is None else [float(x) for x in think_s]
        for r in range(self.concurrency):
            self.arr[r] = ((0.0 if starts_s is None else float(starts_s[r])) + self.fixed
                           + self.think[r])
            self.pending.append(r)
        self.next_release = self.concurrency

    def outstanding(self, t: float) -> int:
        """Requests routed here and not finished by time ``t``."""
        return self.n - bisect_right(self.finish_times, t)

    def pending_prompt(self, t: float) -> int:
        """Prompt tokens routed here whose request has no first token by time ``t``."""
        return self.prompt_routed - self.ft_cum[bisect_right(self.ft_times, t)]

    def load(self, t: float) -> tuple:
        if self.metric == "requests":
            return (self.outstanding(t),)
        return (self.pending_prompt(t), self.outstanding(t))

    def busy(self) -> bool:
        return self.done < self.n

    def _first_token(self, r: int, t: float) -> None:
        self.first_tok[r] = t
        self.ft_times.append(t)
        self.ft_cum.append(self.ft_cum[-1] + self.inp[r])

    def _need(self, r: int) -> int:
        """Blocks to reserve when (re)admitting request r."""
        tgt = self.inp[r] + self.gen[r]
        if self.full:
            tgt = max(tgt, self.inp[r] + self.out[r] - 1)
        return -(-tgt // self.bs)

    def _finished(self, r: int, c: int, b: int) -> None:
        """Running request r done now, with c tokens of KV cache in b blocks."""
        del self._run[r]
        self.free += b
        self.kv_tokens -= c
        self.finish[r] = self.now
        self._done(r)

    def _done(self, r: int) -> None:
        self.done += 1
        self.done_ids.append(r)
        self.finish_times.append(self.now)
        if self.concurrency and self.next_release < self.n:
            k = self.next_release
            self.arr[k] = self.now + self.fixed + self.think[k]
            # staggered starts may still be pending: keep ``pending`` sorted by arrival
            if self.pi < len(self.pending) and self.arr[self.pending[-1]] > self.arr[k]:
                insort(self.pending, k, lo=self.pi, key=self.arr.__getitem__)
            else:
                self.pending.append(k)
            self.next_release += 1

    def _admissible(self) -> bool:
        nrun = len(self._run)
        if nrun >= self.cfg.max_batch:
            return False
        if self.swapped:
            r = self.swapped[0]
        elif self.waiting:
            r = self.waiting[0]
        else:
            return False
        nb = self._need(r)
        return self.free >= nb and (self.free - nb >= self.watermark or not nrun)

    # -- lockstep decode rows -----------------------------------------------------------------
    def _lock_row(self, r: int) -> None:
        """Request r, which emitted at the end of the last iteration, decodes in lockstep."""
        b = self.comp[r] - self._it
        self._lock[r] = b
        self._sum_base += b
        self._grow[b % self.bs] += 1
        heappush(self._fin, (self.inp[r] + self.out[r] - 1 - b, r))

    def _growth(self, m: int) -> int:
        """Blocks the lockstep rows take in the next ``m`` iterations: one each time a
        row's context reaches a block boundary, every ``block_size`` iterations."""
        bs, g, it = self.bs, self._grow, self._it
        cycles, part = divmod(m, bs)
        return cycles * len(self._lock) + sum(g[(-(it + j)) % bs] for j in range(part))

    def _fits(self, free: int) -> int:
        """The most iterations the lockstep rows can run before the blocks they take
        (:meth:`_growth`) exceed ``free``."""
        bs, g, it = self.bs, self._grow, self._it
        cycles, rem = divmod(free, len(self._lock))
        j = 0
        while j < bs - 1:
            rem -= g[(-(it + j)) % bs]
            if rem < 0:
                break
            j += 1
        return cycles * bs + j

    def _unlock(self) -> None:
        """Write the lockstep rows' state out to the per-request lists."""
        comp, gen, blocks, last_emit, inp, bs = (self.comp, self.gen, self.blocks,
                                                 self.last_emit, self.inp, self.bs)
        for r, b in self._lock.items():
            c = b + self._it
            comp[r] = c
            gen[r] = c + 1 - inp[r]
            blocks[r] = max(blocks[r], -(-c // bs))
            last_emit[r] = self.now                # emitted at the end of the last iteration

    def _relock(self, running: list[int]) -> None:
        """The running batch is ``running`` (admission order), its state in the lists."""
        self._run = dict.fromkeys(running)
        self._pre = []
        self._lock = {}
        self._sum_base = 0
        self._grow = [0] * self.bs
        self._fin = []
        comp, gen, inp, last_emit = self.comp, self.gen, self.inp, self.last_emit
        for r in running:
            if comp[r] == inp[r] + gen[r] - 1 and last_emit[r] == self.now:
                self._lock_row(r)
            else:
                self._pre.append(r)

    # -- the scheduler ----------------------------------------------------------------------
    def advance(self, until: float = math.inf) -> None:
        """Run the iterations that start before ``until`` (all of them by default); stop
        early when every request routed here so far is done."""
        pending, waiting, swapped, arr = self.pending, self.waiting, self.swapped, self.arr
        static = self.cfg.policy == "static"
        while self.done < self.n:
            pi = self.pi
            while pi < len(pending) and arr[pending[pi]] <= self.now:
                waiting.append(pending[pi])
                pi += 1
            self.pi = pi
            if not self._run and not waiting and not swapped:
                if pi >= len(pending):
                    return                       # wait for more requests
                t = arr[pending[pi]]
                if t >= until:
                    return
                self.now = max(self.now, t)      # idle: jump to the next arrival
                continue
            if self.now >= until:
                return
            if static:
                self._static_batch()
                continue
            if (self.fast and self._run and not self._pre and not self._admissible()
                    and self._decode_stretch(until)):
                continue
            self._iteration()

    def _decode_stretch(self, until: float) -> bool:
        """Run the lockstep-only iterations up to the next event in one vectorized step,
        if there are enough of them; returns whether it did."""
        cost, bs, B, it = self.cost, self.bs, len(self._lock), self._it
        k = self._fin[0][0] - it                 # up to the first finish
        if self._grows and self.free < B * -(-k // bs):
            k = min(k, self._fits(self.free))    # blocks run out first
        if k < self._min_stretch:
            return False
        pad, eager = None, False
        if self.graph_sizes:
            pad, eager = self.cfg.padded_rows(B), not self.cfg.graph_replay(B)
        L0 = None if cost.windowless else np.fromiter(self._lock.values(), np.int64, B) + (it + 1)
        S0 = self._sum_base + B * (it + 1)

        def run(m):
            if cost.windowless:
                d = cost.decode_run_of_sum(B, S0, m, pad, eager)
            else:
                d = cost.decode_run(L0, m, pad, eager)
            return d + self.step_cpu if self.step_cpu else d

        admit = B < self.cfg.max_batch and not self.waiting and not self.swapped
        t_next = math.inf
        if admit:
            # an arrival could be admitted: stop before the next one (or before ``until``,
            # where the router may send one)
            t_next = until
            if self.pi < len(self.pending):
                t_next = min(t_next, self.arr[self.pending[self.pi]])
            if t_next < math.inf and k > 64:
                # every iteration lasts at least its token and row ops (attention and
                # overheads >= 0; graph replay is the cheaper of the two prices), so at
                # most (t_next - now) / that + 1 of them start before t_next: price those
                g = cost if eager else cost._extra.get("graphs", cost)
                n = B if pad is None else pad
                lb = g.token_s(n) + g.row_s(n) + self.step_cpu
                if lb > 0:
                    k = min(k, int((t_next - self.now) / lb) + 2)
        dts = run(k)
        starts = self.now + np.concatenate([[0.0], np.cumsum(dts)[:-1]])
        if admit:
            if t_next < starts[-1] + dts[-1]:
                k = int(max(1, np.searchsorted(starts, t_next, side="left")))
                dts, starts = dts[:k], starts[:k]
        if k < 2:
            return False
        self.log.add_run(starts, dts, B, B, self.kv_tokens + B * np.arange(1, k + 1))
        if self._stall:     # the first gap also spans the prefill-only iterations before it
            gaps = dts.copy()
            gaps[0] += self._stall
            self._stall = 0.0
            self.log.itl.append((gaps, B))
        else:
            self.log.itl.append((dts, B))
        self.now = float(starts[-1] + dts[-1])
        self.kv_tokens += B * k
        if self._grows:
            self.free -= self._growth(k)
        self._it = it + k
        self._retire()
        return True

    def _retire(self) -> None:
        """Finish the lockstep rows that emitted their last token in the last iteration."""
        fin, it = self._fin, self._it
        while fin and fin[0][0] == it:
            r = heappop(fin)[1]
            b = self._lock.pop(r)
            self._sum_base -= b
            self._grow[b % self.bs] -= 1
            c = b + it
            self._finished(r, c, max(self.blocks[r], -(-c // self.bs)))

    def _preempt(self, free: int) -> tuple[int, int]:
        """Step 1 of an iteration when the decode rows need more blocks than are free:
        row by row, preempting the newest running requests. Returns (free, swapped-out
        tokens); the batch is reloaded without the preempted requests."""
        self._unlock()
        running = list(self._run)
        inp, gen, comp, blocks, bs = self.inp, self.gen, self.comp, self.blocks, self.bs
        swapped, waiting = self.swapped, self.waiting
        swap_tokens = 0
        i = 0
        while i < len(running):
            r = running[i]
            if comp[r] != inp[r] + gen[r] - 1:
                i += 1
                continue
            need = -(-(comp[r] + 1) // bs) - blocks[r]
            while need > free:
                v = running.pop()
                cv = comp[v]
                free += blocks[v]
                self.kv_tokens -= cv
                self.npre[v] += 1
                hb = -(-cv // bs)
                if self.swap and cv > 0 and (self.swap_blocks is None
                                             or self.host_used + hb <= self.swap_blocks):
                    swap_tokens += cv
                    self.host_used += hb
                    self.hblocks[v] = hb
                    self.nswap[v] += 1
                    swapped.appendleft(v)
                else:
                    comp[v] = 0
                    waiting.appendleft(v)
                blocks[v] = 0
                if v == r:
                    break
            else:
                if need > 0:
                    free -= need
                    blocks[r] += need
                i += 1
                continue
            break   # r itself was preempted: it was the last one
        self._relock(running)
        return free, swap_tokens

    def _iteration(self) -> None:
        """One continuous-batching iteration (see the module docstring)."""
        cfg, bs, cost = self.cfg, self.bs, self.cost
        chunked = cfg.chunked
        inp, out, gen, comp, blocks, last_emit = (self.inp, self.out, self.gen, self.comp,
                                                  self.blocks, self.last_emit)
        waiting, swapped, run, pre = self.waiting, self.swapped, self._run, self._pre
        it = self._it
        free = self.free
        swap_tokens = 0
        # no mixing (SGLang): when prefill work is waiting (a prompt in progress, or a request
        # that can be admitted) the iteration runs it alone and the decode rows wait
        alone = not self.mix and (self._admissible() or any(
            inp[r] + gen[r] - comp[r] > 1 for r in pre))
        # 1. a lockstep row takes a block when its context reaches a block boundary (other
        # rows hold the blocks of their whole target); preempt when blocks run out
        tot = self._grow[(-it) % bs] if self._grows and not alone else 0
        if tot <= free:                          # no preemption (the common case)
            free -= tot
        else:
            free, swap_tokens = self._preempt(free)
            run, pre = self._run, self._pre
        n_lock = 0 if alone else len(self._lock)
        budget = cfg.max_tokens - n_lock
        # rows besides the lockstep ones: (request, tokens computed, new tokens, target)
        extra: list[tuple[int, int, int, int]] = []
        has_prefill = False
        # 2. running prefills: those with one token left are decode rows (their budget comes
        # first), the others get chunks, oldest first
        if pre:
            chunks = []
            for r in pre:
                c = comp[r]
                t = inp[r] + gen[r]
                if t - c == 1:
                    if alone:
                        continue                 # a decode row: waits for the prefills
                    extra.append((r, c, 1, t))
                    budget -= 1
                else:
                    chunks.append((r, c, t))
            for r, c, t in chunks:
                if budget <= 0:
                    break
                rem = t - c
                if not chunked and rem > budget and has_prefill:
                    continue
                q = min(rem, budget) if chunked else rem
                extra.append((r, c, q, t))
                budget -= q
                has_prefill = True
        # 3. swapped-out requests back in, then admissions (first come, first served)
        nrun = len(run)
        while nrun < cfg.max_batch and budget > 0:
            if swapped:
                r, queue = swapped[0], swapped
            elif waiting:
                r, queue = waiting[0], waiting
            else:
                break
            nb = self._need(r)
            if free - nb < self.watermark and nrun:
                break
            if free < nb:
                break
            cr = comp[r]
            tr = inp[r] + gen[r]
            qfull = tr - cr
            if not chunked and qfull > budget and has_prefill:
                break
            queue.popleft()
            free -= nb
            if queue is swapped:
                swap_tokens += cr
                self.host_used -= self.hblocks[r]
                self.hblocks[r] = 0
            self.kv_tokens += cr                 # swapped in, or KV received (disaggregated)
            run[r] = None
            pre.append(r)
            blocks[r] = nb
            if math.isnan(self.first_sched[r]):
                self.first_sched[r] = self.now
            q = min(qfull, budget) if chunked else qfull
            extra.append((r, cr, q, tr))
            nrun += 1
            budget -= q
            if q > 1 or cr == 0:
                has_prefill = True
        self.free = free
        n_rows = n_lock + len(extra)
        if not n_rows:
            if self.pi < len(self.pending):   # nothing fits now: wait for the next arrival
                self.now = max(self.now, self.arr[self.pending[self.pi]])
                return
            raise RuntimeError("scheduler stalled")  # pragma: no cover - guarded above
        # 4. the time: a lockstep row has q = 1 and attends to L = comp + 1
        n_tok = n_lock
        prefill = False
        if cost.windowless:
            # features (q, pairs, L, q x L) summed exactly over the rows, in integers (so
            # in any order); a q = 1 row has (1, L, L, L)
            s_L = s_pairs = s_qL = self._sum_base + n_lock * (it + 1) if n_lock else 0
            for _, c, q, _ in extra:
                n_tok += q
                L = c + q
                s_L += L
                s_pairs += (L * (L + 1) - c * (c + 1)) // 2
                s_qL += q * L
                if q > 1 or c == 0:
                    prefill = True
            feats = np.array([float(n_tok), float(s_pairs), float(s_L), float(s_qL)])
            if self.graph_sizes and not prefill:
                dt = cost.time_of_sums(n_tok, n_rows, feats, False, self.cfg.padded_rows(
                    n_rows), not self.cfg.graph_replay(n_rows))
            else:
                dt = cost.time_of_sums(n_tok, n_rows, feats, prefill)
        else:
            q_arr = np.ones(n_rows)
            L_arr = np.empty(n_rows)
            if n_lock:
                L_arr[:n_lock] = np.fromiter(self._lock.values(), np.int64, n_lock) + (it + 1)
            for i, (_, c, q, _) in enumerate(extra, n_lock):
                n_tok += q
                q_arr[i] = q
                L_arr[i] = c + q
                if q > 1 or c == 0:
                    prefill = True
            if self.graph_sizes and not prefill:
                dt = cost.time_of_sums(n_tok, n_rows, cost.feature_sums(q_arr, L_arr), False,
                                       self.cfg.padded_rows(n_rows),
                                       not self.cfg.graph_replay(n_rows))
            else:
                dt = cost.time(q_arr, L_arr, prefill=prefill)
        dt += swap_tokens * self.swap_s + self.step_cpu
        start = self.now
        now = self.now = start + dt
        if not alone:                            # alone: the lockstep rows did not run
            self._it = it + 1
        # every lockstep row emits one token one decode step after its previous one (the
        # iteration's ITL); so does a q = 1 row that emitted at ``start``, unless it is
        # its first token
        itl = self.log.itl
        n_plain = n_lock
        done = []
        for r, c, q, t in extra:
            comp[r] = c + q
            if c + q < t:
                continue
            ir = inp[r]
            if q == 1 and last_emit[r] == start and t != ir:
                n_plain += 1
            elif t == ir:
                self._first_token(r, now)
            else:    # first token after a recompute, a swap or a KV transfer
                itl.append((now - last_emit[r], 1))
            last_emit[r] = now
            gen[r] = t + 1 - ir
            pre.remove(r)
            if gen[r] >= out[r]:
                done.append(r)
            else:
                self._lock_row(r)
        if n_plain:
            itl.append((dt + self._stall, n_plain))
        if alone:
            self._stall += dt
        else:
            self._stall = 0.0
        self.kv_tokens += n_tok
        self.log.add(start, dt, n_rows, n_tok, self.kv_tokens)
        for r in done:
            self._finished(r, comp[r], blocks[r])
        if self._fin and self._fin[0][0] == self._it:
            self._retire()

    def _static_batch(self) -> None:
        """One static batch from the queue head: prefill together, decode to the longest."""
        cost, waiting, inp, out, bs, log = (self.cost, self.waiting, self.inp, self.out,
                                            self.bs, self.log)
        now = self.now
        batch, used = [], 0
        while waiting and len(batch) < self.cfg.max_batch:
            r = waiting[0]
            nb = -(-(inp[r] + out[r] - 1) // bs)
            if used + nb > self.total_blocks:
                break
            waiting.popleft()
            batch.append(r)
            used += nb
        I = np.array([inp[r] for r in batch], dtype=float)
        O = np.array([out[r] for r in batch])
        for r in batch:
            self.first_sched[r] = now
        dt = cost.time(I, I, prefill=True)
        log.add(now, dt, len(batch), I.sum(), I.sum())
        now += dt
        for r in batch:
            self._first_token(r, now)
        K = int(O.max()) - 1
        if K > 0:
            dts = cost.decode_run(I + 1, K)
            ends = now + np.cumsum(dts)
            log.add_run(ends - dts, dts, len(batch), len(batch),
                        I.sum() + len(batch) * np.arange(1, K + 1))
            # ITL: step j emits a token for the rows with output > j + 1
            alive = len(batch) - np.searchsorted(np.sort(O), np.arange(K) + 2, side="left")
            log.itl.append((dts, alive))
            for r, o in zip(batch, O):
                self.finish[r] = float(ends[o - 2]) if o > 1 else now
            now = float(ends[-1])
        else:
            for r in batch:
                self.finish[r] = now
        self.now = now
        for r in batch:
            self._done(r)
