"""The whole cached decoder step in one compiled call: what makes one stream faster than real time.

``FastDecoder.step`` is a chain of about a hundred small torch calls per sample; at batch 1 their
dispatch costs far more than their arithmetic. Here the same maths -- every layer's dilated taps,
gate, residual and skip, the head, and the sampling -- is one numba function that runs a whole
latent frame of steps per call, so Python is entered once per ``pool`` samples:

- the weights are ``FastDecoder``'s folded float32 weights (the same arrays, so both steps share
  one derivation), contiguous and laid out ``(in, out)``: each matrix-vector product is a run of
  contiguous multiply-adds over the output channels that the compiler vectorises;
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


def _sigmoid_inplace(a: np.ndarray) -> None:
    """``a = sigmoid(a) = (1 + tanh(a / 2)) / 2`` with Eigen's rational tanh (vectorises)."""
    half = np.float32(0.5)
    for j in range(a.shape[0]):
        x = min(max(a[j] * half, -TANH_CLAMP), TANH_CLAMP)
        x2 = x * x
        p = x * ((((((P6 * x2 + P5) * x2 + P4) * x2 + P3) * x2 + P2) * x2 + P1) * x2 + P0)
        q = ((Q3 * x2 + Q2) * x2 + Q1) * x2 + Q0
        a[j] = half + half * (p / q)


def _accumulate(acc: np.ndarray, x: np.ndarray, w: np.ndarray, row: int) -> None:
    """``acc += x @ w[row : row + len(x)]``, four input rows per pass over ``acc`` (fewer
    loads and stores of the accumulator per multiply-add)."""
    n, width = x.shape[0], acc.shape[0]
    quads = n - n % 4
    for i in range(0, quads, 4):
        x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        w0, w1, w2, w3 = w[row + i], w[row + i + 1], w[row + i + 2], w[row + i + 3]
        for j in range(width):
            acc[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
    for i in range(quads, n):
        xi, wi = x[i], w[row + i]
        for j in range(width):
            acc[j] += xi * wi[j]


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
    embed: np.ndarray,
    taps: np.ndarray,  # (layers, 2r, 2r): rows [x[t]; x[t - d]]
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
                _accumulate(a, ring[now], w, 0)
                _accumulate(a, ring[past], w, r)
                _sigmoid_inplace(a)
                for i in range(r):  # -tanh(a1) sigmoid(a2), signs folded into the weights
                    z[i] = a[r + i] - np.float32(2.0) * a[i] * a[r + i]
                if not last:
                    ring[nxt] = ring[now]
                    _accumulate(ring[nxt], z, res_weight[layer], 0)
                _accumulate(skip[b], z, skip_weight[layer], 0)
        for b in range(batch):
            row_skip = skip[b]
            np.maximum(row_skip, np.float32(0.0), row_skip)
            hidden[:] = head1_bias
            _accumulate(hidden, row_skip, head1_weight, 0)
            np.maximum(hidden, np.float32(0.0), hidden)
            logits[:] = head2_bias
            _accumulate(logits, hidden, head2_weight, 0)
            if record:
                logits_out[b, step] = logits
            chosen = (
                targets[b, step] if forced else _pick(logits, uniforms[step, b], temperature, min_p, scratch)
            )
            out[b, step] = chosen
            previous[b] = chosen


_compile_lock = threading.Lock()


@cache
def compiled() -> SimpleNamespace:
    """The kernels compiled by numba, or loaded from its on-disk cache (``cache=True``): done on
    first use, so importing this module costs nothing. The kernels call each other through this
    module's globals, so those are replaced by their compiled versions."""
    global _sigmoid_inplace, _accumulate, _pick, _steps
    import numba

    def jit(function: Callable) -> Callable:
        return numba.njit(cache=True, fastmath=True, nogil=True, error_model="numpy")(function)

    with _compile_lock:
        _sigmoid_inplace, _accumulate, _pick = jit(_sigmoid_inplace), jit(_accumulate), jit(_pick)
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
        self.condition = np.zeros((batch, decoder.cond_weight.shape[1]), dtype=np.float32)
        self.t = 0

    @property
    def batch(self) -> int:
        return self.rings.shape[0]


class FusedDecoder:
    """A decoder's folded float32 weights (``FastDecoder.weights``) as the fused step reads them.

    ``FastDecoder.fused()`` builds one, so the weight folding has one home and both steps give
    the same logits to float32 rounding; ``FastDecoder.sample`` drives either step.
    """

    def __init__(self, weights: FoldedWeights, dilations: Sequence[int], cfg: ModelConfig) -> None:
        self.cfg = cfg

        def a(t: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

        layers = len(dilations)
        self.slots = np.array([d + 1 for d in dilations], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.slots)[:-1]]).astype(np.int64)
        self.ring_init = [a(t) for t in weights.ring_init]
        self.cond_weight, self.cond_bias = weights.cond_weight, weights.cond_bias
        self.embed = a(weights.embed)
        self.taps = np.stack([a(t) for t in weights.taps])
        self.res_weight = np.stack([a(t) for t in weights.res_weight])
        self.skip_weight = a(weights.skip_weight).reshape(layers, cfg.residual_channels, -1)
        self.skip_bias = a(weights.skip_bias)
        self.head1 = (a(weights.head1[0]), a(weights.head1[1]))
        self.head2 = (a(weights.head2[0]), a(weights.head2[1]))
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
            self.embed,
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
