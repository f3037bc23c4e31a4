"""The whole cached decoder step in one compiled call: what makes one stream faster than real time.

``FastDecoder.step`` is a chain of about a hundred small torch calls per sample; at batch 1 their
dispatch costs far more than their arithmetic. Here the same maths -- every layer's dilated taps,
gate, residual and skip, the head, and the sampling -- is one numba function that runs a whole
latent frame of steps per call, so Python is entered once per ``pool`` samples:

- the weights are ``FastDecoder``'s folded float32 weights (the same arrays, so both steps share
  one derivation), contiguous and laid out ``(in, out)``: each matrix-vector product is a run of
  contiguous multiply-adds over the output channels that the compiler vectorises;
- a matrix-vector product reads every weight once per sample and reuses none, so at batch 1 the
  step is bound by the bytes of its weights, not its arithmetic (the small decoder's float32
  matrices are about the size of L2). In ``bfloat16`` the matrices are stored as bfloat16, half
  the bytes, two input rows to a 32-bit word (``pack_bfloat16``): a word's upper half is already
  a float32 with its low bits cleared and its lower half becomes one by a shift, so a weight
  costs one integer op on its way to the multiply-add (``_accumulate_pairs``). Activations,
  accumulation and everything else stay float32. This is the plan's ``bfloat16`` dtype for this
  step (``speed.py``), with ``speed.BF16_TOLERANCE`` as its bound;
- layer 0's input is the embedding of the previous class, so both its taps are rows of two
  ``(classes + 1, 2r)`` tables (the embedding times each tap, in float64, and a zero row for the
  zero padding before the first sample): two lookups instead of its matrix-vector product;
- each layer keeps ``dilation + 1`` past inputs in its own ring (one array holds every layer's
  ring back to back), so the two taps read ``x[t]`` and ``x[t - d]`` in place;
- a layer's residual and skip outputs are accumulated in the same pass over its gate output;
- the conditioning is projected once per latent frame, outside the kernel, with the bias folded in;
- tanh and sigmoid are one rational approximation (Eigen's, max error ~4e-7), which vectorises
  where ``exp`` does not;
- sampling draws by inverse CDF from the same seeded uniforms as ``Sampler`` (``Sampler.draw``),
  so a seed means the same random stream on either path. The choice of a class from the logits
  is its own function (``_pick``): a truncation of the distribution goes there.

A batch of streams is stepped layer by layer (each layer's weights serve every row before the
next layer's are read), so batches reuse the weights from cache. Compiled functions are cached on
disk (``cache=True``): only the first use after installing compiles.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from functools import cache
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import torch

from .config import ModelConfig
from .model import START_CLASS

DTYPES = (torch.float32, torch.bfloat16)
"""How the fused step may store its matrices (``FusedDecoder``): computed in float32 either way."""

if TYPE_CHECKING:
    from .generate import FoldedWeights

TANH_CLAMP = np.float32(7.90531110763549805)
"""Beyond this the rational approximation below is 1 in float32."""
# Eigen's rational tanh, p(x) / q(x) in x * x: numerator and denominator coefficients
P0, P1, P2, P3, P4, P5, P6 = (
    np.float32(c)
    for c in (
        4.89352455891786e-03,
        6.37261928875436e-04,
        1.48572235717979e-05,
        5.12229709037114e-08,
        -8.60467152213735e-11,
        2.00018790482477e-13,
        -2.76076847742355e-16,
    )
)
Q0, Q1, Q2, Q3 = (
    np.float32(c)
    for c in (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
)


def available() -> bool:
    """True where the fused step can run (numba importable; it comes with librosa)."""
    return importlib.util.find_spec("numba") is not None


def pack_bfloat16(matrix: torch.Tensor) -> np.ndarray:
    """``(in, out)`` float32 -> ``(ceil(in / 2), out)`` uint32: rows ``2k`` and ``2k + 1`` rounded
    to bfloat16 in the upper and lower half of row ``k``'s words (an odd last row pairs with zeros)."""
    bits = matrix.detach().cpu().float().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    if len(bits) % 2:
        bits = np.concatenate([bits, np.zeros_like(bits[:1])])
    return (bits[0::2].astype(np.uint32) << 16) | bits[1::2]


def _high(word: np.uint32) -> np.float32:
    """The bfloat16 in the upper half of ``word``, as float32 (``compiled()`` replaces this by an
    intrinsic: a mask and a bit cast, which vectorise with the multiply-adds)."""
    return (np.uint32(word) & np.uint32(0xFFFF0000)).view(np.float32)


def _low(word: np.uint32) -> np.float32:
    """The bfloat16 in the lower half of ``word``, as float32 (a shift and a bit cast, compiled)."""
    return (np.uint32(word) << np.uint32(16)).view(np.float32)


def _halves_intrinsics() -> tuple[Callable, Callable]:
    """``_high`` and ``_low`` for compiled code."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    word = ir.IntType(32)

    def high(context: object, builder: ir.IRBuilder, signature: object, args: list) -> ir.Value:
        return builder.bitcast(builder.and_(args[0], ir.Constant(word, 0xFFFF0000)), ir.FloatType())

    def low(context: object, builder: ir.IRBuilder, signature: object, args: list) -> ir.Value:
        return builder.bitcast(builder.shl(args[0], ir.Constant(word, 16)), ir.FloatType())

    def typed(codegen: Callable) -> Callable:
        def typer(typingctx: object, value: types.Type) -> tuple | None:
            return (types.float32(types.uint32), codegen) if value == types.uint32 else None

        return intrinsic(typer)

    return typed(high), typed(low)


def _sigmoid_inplace(a: np.ndarray) -> None:
    """``a = sigmoid(a) = (1 + tanh(a / 2)) / 2`` with Eigen's rational tanh (vectorises)."""
    half = np.float32(0.5)
    for j in range(a.shape[0]):
        x = min(max(a[j] * half, -TANH_CLAMP), TANH_CLAMP)
        x2 = x * x
        p = x * ((((((P6 * x2 + P5) * x2 + P4) * x2 + P3) * x2 + P2) * x2 + P1) * x2 + P0)
        q = ((Q3 * x2 + Q2) * x2 + Q1) * x2 + Q0
        a[j] = half + half * (p / q)


def _accumulate(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``acc += x @ W`` for ``W`` stored as ``w``: float32, or bfloat16 pairs of rows
    (``pack_bfloat16``). Compiled, numba picks one of the two below from ``w``'s dtype when it
    types the call (``compiled()``)."""
    if w.dtype == np.uint32:
        _accumulate_pairs(acc, x, w)
    else:
        _accumulate_float32(acc, x, w)


def _accumulate_float32(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``acc += x @ w``, four input rows per pass over ``acc`` (fewer
    loads and stores of the accumulator per multiply-add)."""
    n, width = x.shape[0], acc.shape[0]
    quads = n - n % 4
    for i in range(0, quads, 4):
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        w0, w1, w2, w3 = w[i], w[i + 1], w[i + 2], w[i + 3]
        for j in range(width):
            acc[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
    for i in range(quads, n):
        xi, wi = x[i], w[i]
        for j in range(width):
            acc[j] += xi * wi[j]


def _accumulate_pairs(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``_accumulate_float32`` for bfloat16 pairs of rows: eight input rows (four words) per pass."""
    n, width = x.shape[0], acc.shape[0]
    eights = n - n % 8
    for i in range(0, eights, 8):
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        x4, x5, x6, x7 = x[i + 4], x[i + 5], x[i + 6], x[i + 7]
        k = i // 2
        p0, p1, p2, p3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        for j in range(width):
            acc[j] += (
                x0 * _high(p0[j])
                + x1 * _low(p0[j])
                + x2 * _high(p1[j])
                + x3 * _low(p1[j])
                + x4 * _high(p2[j])
                + x5 * _low(p2[j])
                + x6 * _high(p3[j])
                + x7 * _low(p3[j])
            )
    for i in range(eights, n, 2):
        pair = w[i // 2]
        x0, x1 = x[i], x[i + 1] if i + 1 < n else np.float32(0.0)
        for j in range(width):
            acc[j] += x0 * _high(pair[j]) + x1 * _low(pair[j])


def _pick(
    logits: np.ndarray, u: np.float32, temperature: np.float32, min_p: np.float32, scratch: np.ndarray
) -> int:
    """The class drawn from ``logits`` by inverse CDF at uniform ``u`` (argmax at temperature 0).

    The same rule as ``Sampler``: softmax at ``temperature``, classes below ``min_p`` times the
    most likely one's probability dropped, cumulated, the first class whose cumulative
    probability exceeds ``u`` times the total (never a class of probability zero).
    """
    classes = logits.shape[0]
    best = 0
    for k in range(1, classes):
        if logits[k] > logits[best]:
            best = k
    if temperature <= 0:
        return best
    top = logits[best] / temperature
    total = np.float32(0.0)
    for k in range(classes):
        ratio = np.exp(logits[k] / temperature - top)  # p_k / p_max
        scratch[k] = ratio if ratio >= min_p else np.float32(0.0)
        total += scratch[k]
    running = np.float32(0.0)
    for k in range(classes):
        running += scratch[k] / total
        scratch[k] = running
    target = u * running
    for k in range(classes):
        if scratch[k] > target:
            return k
    return classes - 1


def _steps(
    t0: int,
    count: int,
    condition: np.ndarray,  # (batch, layers * 2r), bias folded in: one latent frame
    rings: np.ndarray,  # (batch, sum(dilation + 1), r)
    offsets: np.ndarray,  # (layers,) first ring slot of each layer
    slots: np.ndarray,  # (layers,) dilation + 1
    previous: np.ndarray,  # (batch,) int64: the class before step t0, updated
    before: np.ndarray,  # (batch,) int64: the class before that (classes: none yet), updated
    embed: np.ndarray,
    first_taps: np.ndarray,  # (2, classes + 1, 2r): layer 0's taps of each class (and of zeros)
    taps: np.ndarray,  # (layers, 2, r, 2r): the taps of x[t] and x[t - d]; layer 0's as first_taps
    res_weight: np.ndarray,  # (layers, r, r)
    skip_weight: np.ndarray,  # (layers, r, s)
    skip_bias: np.ndarray,
    head1_weight: np.ndarray,
    head1_bias: np.ndarray,
    head2_weight: np.ndarray,
    head2_bias: np.ndarray,
    uniforms: np.ndarray,  # (count, batch) float32; unused at temperature 0
    temperature: np.float32,
    min_p: np.float32,
    targets: np.ndarray,  # (batch, count) int64 teacher forcing, or (0, 0) to sample
    out: np.ndarray,  # (batch, count) uint8 classes
    logits_out: np.ndarray,  # (batch, count, classes) float32, or (0, 0, 0)
) -> None:
    """``count`` cached decoder steps from step ``t0`` for every row, all in this one call."""
    batch, r = rings.shape[0], rings.shape[2]
    layers, s, classes = taps.shape[0], skip_bias.shape[0], head2_bias.shape[0]
    a = np.empty(2 * r, dtype=np.float32)
    z = np.empty(r, dtype=np.float32)
    skip = np.empty((batch, s), dtype=np.float32)
    hidden = np.empty(s, dtype=np.float32)
    logits = np.empty(classes, dtype=np.float32)
    scratch = np.empty(classes, dtype=np.float32)
    forced = targets.shape[0] > 0
    record = logits_out.shape[0] > 0
    for step in range(count):
        t = t0 + step
        for b in range(batch):
            rings[b, offsets[0] + t % slots[0]] = embed[previous[b]]
            skip[b] = skip_bias
        for layer in range(layers):
            now = offsets[layer] + t % slots[layer]
            past = offsets[layer] + (t + 1) % slots[layer]  # holds x[t - dilation]
            last = layer + 1 == layers
            nxt = 0 if last else offsets[layer + 1] + t % slots[layer + 1]
            w = taps[layer]
            for b in range(batch):
                ring = rings[b]
                a[:] = condition[b, 2 * r * layer : 2 * r * (layer + 1)]
                if layer == 0:
                    a += first_taps[0, previous[b]]
                    a += first_taps[1, before[b]]
                else:
                    _accumulate(a, ring[now], w[0])
                    _accumulate(a, ring[past], w[1])
                _sigmoid_inplace(a)
                for i in range(r):  # -tanh(a1) sigmoid(a2), signs folded into the weights
                    z[i] = a[r + i] - np.float32(2.0) * a[i] * a[r + i]
                if not last:
                    ring[nxt] = ring[now]
                    _accumulate(ring[nxt], z, res_weight[layer])
                _accumulate(skip[b], z, skip_weight[layer])
        for b in range(batch):
            row_skip = skip[b]
            np.maximum(row_skip, np.float32(0.0), row_skip)
            hidden[:] = head1_bias
            _accumulate(hidden, row_skip, head1_weight)
            np.maximum(hidden, np.float32(0.0), hidden)
            logits[:] = head2_bias
            _accumulate(logits, hidden, head2_weight)
            if record:
                logits_out[b, step] = logits
            chosen = (
                targets[b, step] if forced else _pick(logits, uniforms[step, b], temperature, min_p, scratch)
            )
            out[b, step] = chosen
            before[b] = previous[b]
            previous[b] = chosen


_compile_lock = threading.Lock()


@cache
def compiled() -> SimpleNamespace:
    """The kernels compiled by numba, or loaded from its on-disk cache (``cache=True``): done on
    first use, so importing this module costs nothing. The kernels call each other through this
    module's globals, so those are replaced by their compiled versions (``_accumulate`` by a
    choice between its two forms made when numba types the call)."""
    global _high, _low, _sigmoid_inplace, _accumulate_float32, _accumulate_pairs, _pick, _steps
    import numba
    from numba import types
    from numba.extending import overload

    options = {"fastmath": True, "nogil": True, "error_model": "numpy"}

    def jit(function: Callable) -> Callable:
        return numba.njit(cache=True, **options)(function)

    with _compile_lock:
        _high, _low = _halves_intrinsics()
        _sigmoid_inplace, _pick = jit(_sigmoid_inplace), jit(_pick)
        _accumulate_float32, _accumulate_pairs = jit(_accumulate_float32), jit(_accumulate_pairs)

        @overload(_accumulate, jit_options=options)
        def typed(acc, x, w):  # no annotations: numba compares this signature with the lambda's
            chosen = _accumulate_pairs if w.dtype == types.uint32 else _accumulate_float32
            return lambda acc, x, w: chosen(acc, x, w)

        _steps = jit(_steps)
    return SimpleNamespace(steps=_steps, pick=_pick)


class FusedState:
    """One batch of streams: every layer's ring, the last class of each row and the step count."""

    def __init__(self, decoder: FusedDecoder, batch: int) -> None:
        self.rings = np.concatenate(
            [
                np.broadcast_to(init, (batch, slots, init.shape[0]))
                for init, slots in zip(decoder.ring_init, decoder.slots, strict=True)
            ],
            axis=1,
        ).copy()
        self.previous = np.full(batch, START_CLASS, dtype=np.int64)
        self.before = np.full(batch, decoder.first_taps.shape[1] - 1, dtype=np.int64)  # zeros
        self.condition = np.zeros((batch, decoder.cond_weight.shape[1]), dtype=np.float32)
        self.t = 0

    @property
    def batch(self) -> int:
        return self.rings.shape[0]

    def reorder(self, rows: np.ndarray) -> None:
        """Row ``i`` takes row ``rows[i]``'s history: its rings and its last two classes."""
        for history in (self.rings, self.previous, self.before):
            history[:] = history[rows]


class FusedDecoder:
    """A decoder's folded float32 weights (``FastDecoder.weights``) as the fused step reads them,
    the matrices stored in ``dtype`` (one of ``DTYPES``).

    ``FastDecoder.fused()`` builds one, so the weight folding has one home and, in float32, both
    steps give the same logits to float32 rounding; ``FastDecoder.sample`` drives either step.
    """

    def __init__(
        self,
        weights: FoldedWeights,
        dilations: Sequence[int],
        cfg: ModelConfig,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"the fused step stores float32 or bfloat16, not {dtype}")
        self.cfg, self.dtype = cfg, dtype

        def a(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        def m(t: torch.Tensor) -> np.ndarray:  # a matrix, as the kernel stores it
            return a(t) if dtype == torch.float32 else pack_bfloat16(t)

        layers, r = len(dilations), cfg.residual_channels
        self.slots = np.array([d + 1 for d in dilations], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.slots)[:-1]]).astype(np.int64)
        self.ring_init = [a(t) for t in weights.ring_init]
        self.cond_weight, self.cond_bias = weights.cond_weight, weights.cond_bias
        self.embed = a(weights.embed)
        embed, first = weights.embed.double(), weights.taps[0].double()
        self.first_taps = np.zeros((2, len(self.embed) + 1, 2 * r), dtype=np.float32)  # + zeros
        self.first_taps[:, :-1] = torch.stack([embed @ first[:r], embed @ first[r:]]).numpy()
        self.taps = np.stack([np.stack([m(t[:r]), m(t[r:])]) for t in weights.taps])
        self.res_weight = np.stack([m(t) for t in weights.res_weight])
        self.skip_weight = np.stack([m(t) for t in weights.skip_weight.reshape(layers, r, -1)])
        self.skip_bias = a(weights.skip_bias)
        self.head1 = (m(weights.head1[0]), a(weights.head1[1]))
        self.head2 = (m(weights.head2[0]), a(weights.head2[1]))
        self.run(self.new_state(1), 0, None, 0.0)  # compiles, or loads the compiled code, now

    def new_state(self, batch: int) -> FusedState:
        """Rings for ``batch`` streams, holding what the causal conv's zero padding holds."""
        return FusedState(self, batch)

    def project_condition(self, state: FusedState, frame: torch.Tensor) -> None:
        """One latent frame ``(batch, latent_dim)`` -> every layer's conditioning, in ``state``."""
        projected = torch.addmm(self.cond_bias, frame.to(torch.float32), self.cond_weight)
        state.condition[:] = projected.cpu().numpy()

    def run(
        self,
        state: FusedState,
        count: int,
        uniforms: np.ndarray | None,
        temperature: float,
        min_p: float = 0.0,
        targets: np.ndarray | None = None,
        logits: np.ndarray | None = None,
    ) -> np.ndarray:
        """``count`` steps under the current conditioning -> classes ``(batch, count)`` uint8.

        ``targets`` (teacher forcing) replaces sampling; ``logits`` ``(batch, count, classes)``
        receives every step's logits.
        """
        batch = state.batch
        out = np.empty((batch, count), dtype=np.uint8)
        if uniforms is None:
            uniforms = np.zeros((count, batch), dtype=np.float32)
        compiled().steps(
            state.t,
            count,
            state.condition,
            state.rings,
            self.offsets,
            self.slots,
            state.previous,
            state.before,
            self.embed,
            self.first_taps,
            self.taps,
            self.res_weight,
            self.skip_weight,
            self.skip_bias,
            *self.head1,
            *self.head2,
            np.ascontiguousarray(uniforms, dtype=np.float32),
            np.float32(temperature),
            np.float32(min_p),
            np.zeros((0, 0), dtype=np.int64)
            if targets is None
            else np.ascontiguousarray(targets, dtype=np.int64),
            out,
            np.zeros((0, 0, 0), dtype=np.float32) if logits is None else logits,
        )
        state.t += count
        return out

    def teacher_forced_logits(self, target: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes, time)`` stepping through ``target``: checks the step."""
        batch, length = target.shape
        pool = self.cfg.pool
        state = self.new_state(batch)
        logits = np.empty((batch, length, self.head2[1].shape[0]), dtype=np.float32)
        targets = target.numpy()
        for start in range(0, length, pool):
            stop = min(start + pool, length)
            self.project_condition(state, latent[:, :, start // pool])
            self.run(state, stop - start, None, 0.0, 0.0, targets[:, start:stop], logits[:, start:stop])
        return torch.from_numpy(logits).permute(0, 2, 1)
