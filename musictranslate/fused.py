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
  accumulation and everything else stay float32. On a CPU with bfloat16 dot-product
  instructions (``bf16_dot.py``) a product instead rounds its input to bfloat16 too and
  multiplies 32 pairs per instruction (``_accumulate_native``), as torch's bf16 matmuls do. This
  is the plan's ``bfloat16`` dtype for this step (``speed.py``), with ``speed.BF16_TOLERANCE`` as
  its bound;
- layer 0's input is the embedding of the previous class, so both its taps are rows of two
  ``(classes + 1, 2r)`` tables (the embedding times each tap, in float64, and a zero row for the
  zero padding before the first sample): two lookups instead of its matrix-vector product;
- each layer keeps ``dilation + 1`` past inputs in its own ring (one array holds every layer's
  ring back to back), so the two taps read ``x[t]`` and ``x[t - d]`` in place;
- a layer is two products: its two taps as one ``(2r, 2r)`` matrix whose rows interleave
  ``x[t]`` and ``x[t - d]`` (so the bfloat16 form pairs the two taps in one word and reads both
  ring slots where they lie, no copy), and its residual and skip as one ``(r, r + s)`` matrix over
  its gate output, whose residual block starts from and lands in the next layer's ring slot and
  whose skip block accumulates in place: each product reads its input once, and its accumulators
  start where their addend already lies instead of being copied there;
- the conditioning is projected once per latent frame, outside the kernel, with the bias folded in;
- tanh and sigmoid are one rational approximation (Eigen's, max error ~4e-7), which vectorises
  where ``exp`` does not;
- sampling draws by inverse CDF from the same seeded uniforms as ``Sampler`` (``Sampler.draw``),
  so a seed means the same random stream on either path. The choice of a class from the logits
  is its own function (``_pick``): a truncation of the distribution goes there.

A batch of streams is stepped matrix by matrix: each product runs over every row before the next
matrix is read, in blocks of ``ROWS`` rows that widen and multiply each weight once for four rows
(``_accumulate4``), so a row in a block costs less than a row stepped alone (docs/speed-live.md
has the rates; ``speed.STEP_COSTS`` models them). The softmax uses its own ``exp`` (``_exp``),
which vectorises where ``np.exp`` is one call per class, a large share of a batched step.
Compiled functions are cached on disk (``cache=True``): only the first use after installing
compiles.
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

from . import bf16_dot
from .bf16_dot import BLOCK_COLUMNS
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


def _as_float32(bits: np.uint32) -> np.float32:
    """The float32 whose bits are ``bits`` (``compiled()`` replaces this by an intrinsic, a bit
    cast that vectorises with the arithmetic around it)."""
    return np.uint32(bits).view(np.float32)


def _high(word: np.uint32) -> np.float32:
    """The bfloat16 in the upper half of ``word``, as float32: its low bits masked off."""
    return _as_float32(np.uint32(word & np.uint32(0xFFFF0000)))


def _low(word: np.uint32) -> np.float32:
    """The bfloat16 in the lower half of ``word``, as float32: shifted into the upper half."""
    return _as_float32(np.uint32(word << np.uint32(16)))  # the bits shifted out are dropped


def _bit_cast_intrinsic() -> Callable:
    """``_as_float32`` for compiled code."""
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    def codegen(context: object, builder: ir.IRBuilder, signature: object, args: list) -> ir.Value:
        return builder.bitcast(args[0], ir.FloatType())

    def typer(typingctx: object, value: types.Type) -> tuple | None:
        return (types.float32(types.uint32), codegen) if value == types.uint32 else None

    return intrinsic(typer)


EXP_RANGE = (np.float32(-80.0), np.float32(88.0))
"""Where ``_exp`` is computed: below, it is 0, so a probability (at most 256 such ratios summed
divide it) is never a subnormal float, which the CPU handles hundreds of times slower; above,
``2 ** k`` has no float32 exponent."""
LOG2E = np.float32(1.44269504088896341)
LN2_HIGH, LN2_LOW = np.float32(0.693359375), np.float32(-2.12194440e-4)  # ln 2 = high + low
# e ** r on [-ln 2 / 2, ln 2 / 2] is 1 + r + r ** 2 (E0 + r (E1 + ...)): Cephes' expf
E0, E1, E2, E3, E4, E5 = (
    np.float32(c)
    for c in (
        5.0000001201e-1,
        1.6666665459e-1,
        4.1665795894e-2,
        8.3334519073e-3,
        1.3981999507e-3,
        1.9875691500e-4,
    )
)


def _exp(x: np.float32) -> np.float32:
    """``exp(x)`` in float32 as ``2 ** k e ** r`` with ``r = x - k ln 2`` (Cephes' expf, within
    a few ulp). Unlike ``np.exp`` it vectorises, so the sampler's softmax over the classes is a
    few dozen vector ops instead of one call per class."""
    low, high = EXP_RANGE
    clamped = min(max(x, low), high)
    k = np.floor(clamped * LOG2E + np.float32(0.5))
    r = clamped - k * LN2_HIGH - k * LN2_LOW
    poly = ((((E5 * r + E4) * r + E3) * r + E2) * r + E1) * r + E0
    scale = _as_float32(np.uint32((np.int32(k) + np.int32(127)) << np.int32(23)))
    value = (poly * r * r + r + np.float32(1.0)) * scale
    return value if x >= low else np.float32(0.0)


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


ROWS = 4
"""Rows of a batch the blocked products (``_accumulate4``) step at once: each weight is loaded
once for four rows, so a batch reuses it from registers instead of reading it again per row."""


def _accumulate_batch(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``acc[b] += x[b] @ W`` for every row ``b``: blocks of ``ROWS`` rows, then one row at a time."""
    batch = acc.shape[0]
    full = batch - batch % ROWS
    for b in range(0, full, ROWS):
        _accumulate4(acc[b : b + ROWS], x[b : b + ROWS], w)
    for b in range(full, batch):
        _accumulate(acc[b], x[b], w)


def _copy(result: np.ndarray, source: np.ndarray) -> None:
    """``result[b, i] = source[b, i]`` over ``result``'s shape: loops numba vectorises, where its
    slice assignment between views walks element by element (slower than the products it feeds)."""
    for b in range(result.shape[0]):
        for i in range(result.shape[1]):
            result[b, i] = source[b, i]


def _start_and_accumulate(result: np.ndarray, start: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``result[b] = start[b] + x[b] @ W`` on the widening path (``start`` may be ``result``)."""
    _copy(result, start)
    _accumulate_batch(result, x, w)


def _product(result: np.ndarray, start: np.ndarray, x: np.ndarray, w: np.ndarray, words: np.ndarray) -> None:
    """``result[b] = start[b] + x[b] @ W`` for every row, as the CPU does it best: on bfloat16
    dot-product instructions where it has them (``_accumulate_native``, ``words`` its scratch),
    else widening (compiled: one of the two, chosen from ``w``'s dtype and the CPU when numba
    types the call, so a CPU without the instruction never compiles it)."""
    _start_and_accumulate(result, start, x, w)


def _dot_blocks(result: np.ndarray, start: np.ndarray, pairs: np.ndarray, w: np.ndarray, column: int) -> None:
    """``result[b] = start[b] + x[b] @ W[:, column : column + width]`` on ``vdpbf16ps``
    (``bf16_dot.py``), ``x`` as bfloat16 ``pairs``: blocks of ``ROWS`` rows and
    ``bf16_dot.BLOCK_COLUMNS`` columns, then the rows left one at a time."""
    batch, width = result.shape
    full = batch - batch % ROWS
    for b in range(0, full, ROWS):
        for j in range(0, width, BLOCK_COLUMNS):
            _dot4(start[b : b + ROWS, j:], result[b : b + ROWS, j:], pairs[b : b + ROWS], w, column + j)
    for b in range(full, batch):
        for j in range(0, width, BLOCK_COLUMNS):
            _dot1(start[b : b + 1, j:], result[b : b + 1, j:], pairs[b : b + 1], w, column + j)


def _accumulate_native(
    result: np.ndarray, start: np.ndarray, x: np.ndarray, w: np.ndarray, words: np.ndarray
) -> None:
    """``_product`` for bfloat16 pairs of rows on ``vdpbf16ps``: ``x`` rounded to bfloat16 pairs
    in ``words``, then ``_dot_blocks``. A width that is not a whole number of blocks (only the
    tests' tiny models have one) takes the widening path."""
    if result.shape[1] % BLOCK_COLUMNS:
        _start_and_accumulate(result, start, x, w)
        return
    pairs = words[: result.shape[0], : (x.shape[1] + 1) // 2]
    _round_pairs(x, pairs)
    _dot_blocks(result, start, pairs, w, 0)


def _taps_widening(
    a: np.ndarray,
    start: np.ndarray,
    now: np.ndarray,
    past: np.ndarray,
    w: np.ndarray,
    inputs: np.ndarray,
    words: np.ndarray,
) -> None:
    """``_taps`` with its input copied into ``inputs``, interleaved as ``w``'s rows are."""
    for b in range(now.shape[0]):
        for i in range(now.shape[1]):
            inputs[b, 2 * i] = now[b, i]
            inputs[b, 2 * i + 1] = past[b, i]
    _product(a, start, inputs, w, words)


def _taps(
    a: np.ndarray,
    start: np.ndarray,
    now: np.ndarray,
    past: np.ndarray,
    w: np.ndarray,
    inputs: np.ndarray,
    words: np.ndarray,
) -> None:
    """A layer's two taps: ``a[b] = start[b] + (x[t] W_now + x[t - d] W_past)`` with ``w``'s rows
    interleaved (row ``2i`` is ``W_now``'s row ``i``, row ``2i + 1`` ``W_past``'s), so a
    bfloat16 pair holds ``x[t]`` and ``x[t - d]`` at the same channel and the native path reads
    both where they lie in the rings (``_taps_native``). Compiled: the native or the widening
    form, chosen as ``_product``'s."""
    _taps_widening(a, start, now, past, w, inputs, words)


def _taps_native(
    a: np.ndarray,
    start: np.ndarray,
    now: np.ndarray,
    past: np.ndarray,
    w: np.ndarray,
    inputs: np.ndarray,
    words: np.ndarray,
) -> None:
    """``_taps`` on ``vdpbf16ps``: the words rounded straight from the two ring slots."""
    if a.shape[1] % BLOCK_COLUMNS:
        _taps_widening(a, start, now, past, w, inputs, words)
        return
    pairs = words[: now.shape[0], : now.shape[1]]
    _round_interleaved(now, past, pairs)
    _dot_blocks(a, start, pairs, w, 0)


def _residual_skip_widening(
    following: np.ndarray,
    skip: np.ndarray,
    now: np.ndarray,
    z: np.ndarray,
    w: np.ndarray,
    outputs: np.ndarray,
    words: np.ndarray,
) -> None:
    """``_residual_skip`` as one product into ``outputs``, then copied out."""
    r, s = now.shape[1], skip.shape[1]
    for b in range(now.shape[0]):
        for i in range(r):
            outputs[b, i] = now[b, i]
        for i in range(s):
            outputs[b, r + i] = skip[b, i]
    _product(outputs, outputs, z, w, words)
    for b in range(now.shape[0]):
        for i in range(r):
            following[b, i] = outputs[b, i]
        for i in range(s):
            skip[b, i] = outputs[b, r + i]


def _residual_skip(
    following: np.ndarray,
    skip: np.ndarray,
    now: np.ndarray,
    z: np.ndarray,
    w: np.ndarray,
    outputs: np.ndarray,
    words: np.ndarray,
) -> None:
    """A layer's residual and skip from its gate output ``z``, ``w`` being ``(r, r + s)``:
    ``following = now + z W_res`` (the next layer's input, written into its ring slot) and
    ``skip += z W_skip``. Compiled: the native form (``_residual_skip_native``: the two column
    ranges of one pass over ``z``'s words, each summed from where its start lies) or the
    widening one (``outputs`` its scratch), chosen as ``_product``'s."""
    _residual_skip_widening(following, skip, now, z, w, outputs, words)


def _residual_skip_native(
    following: np.ndarray,
    skip: np.ndarray,
    now: np.ndarray,
    z: np.ndarray,
    w: np.ndarray,
    outputs: np.ndarray,
    words: np.ndarray,
) -> None:
    """``_residual_skip`` on ``vdpbf16ps``, with no copies."""
    r = now.shape[1]
    if r % BLOCK_COLUMNS or skip.shape[1] % BLOCK_COLUMNS:
        _residual_skip_widening(following, skip, now, z, w, outputs, words)
        return
    pairs = words[: z.shape[0], : (z.shape[1] + 1) // 2]
    _round_pairs(z, pairs)
    _dot_blocks(following, now, pairs, w, 0)
    _dot_blocks(skip, skip, pairs, w, r)


def _accumulate4(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """``acc[k] += x[k] @ W`` for a block of four rows, ``W`` as in ``_accumulate`` (compiled: one
    of the two below, chosen from ``w``'s dtype)."""
    if w.dtype == np.uint32:
        _accumulate4_pairs(acc, x, w)
    else:
        _accumulate4_float32(acc, x, w)


def _accumulate4_float32(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """Four rows of ``_accumulate_float32``, two input rows per pass: each weight feeds four rows."""
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    x0, x1, x2, x3 = x[0], x[1], x[2], x[3]
    n, width = x0.shape[0], a0.shape[0]
    pairs = n - n % 2
    for i in range(0, pairs, 2):
        u0, u1, u2, u3 = x0[i], x1[i], x2[i], x3[i]
        v0, v1, v2, v3 = x0[i + 1], x1[i + 1], x2[i + 1], x3[i + 1]
        wi, wj = w[i], w[i + 1]
        for j in range(width):
            p, q = wi[j], wj[j]
            a0[j] += u0 * p + v0 * q
            a1[j] += u1 * p + v1 * q
            a2[j] += u2 * p + v2 * q
            a3[j] += u3 * p + v3 * q
    for i in range(pairs, n):
        wi = w[i]
        for j in range(width):
            a0[j] += x0[i] * wi[j]
            a1[j] += x1[i] * wi[j]
            a2[j] += x2[i] * wi[j]
            a3[j] += x3[i] * wi[j]


def _accumulate4_pairs(acc: np.ndarray, x: np.ndarray, w: np.ndarray) -> None:
    """Four rows of ``_accumulate_pairs``, two words (four input rows) per pass: each weight is
    widened once for four rows."""
    a0, a1, a2, a3 = acc[0], acc[1], acc[2], acc[3]
    x0, x1, x2, x3 = x[0], x[1], x[2], x[3]
    n, width = x0.shape[0], a0.shape[0]
    quads = n - n % 4
    for i in range(0, quads, 4):
        k = i // 2
        p0, p1 = w[k], w[k + 1]
        b00, b01, b02, b03 = x0[i], x0[i + 1], x0[i + 2], x0[i + 3]
        b10, b11, b12, b13 = x1[i], x1[i + 1], x1[i + 2], x1[i + 3]
        b20, b21, b22, b23 = x2[i], x2[i + 1], x2[i + 2], x2[i + 3]
        b30, b31, b32, b33 = x3[i], x3[i + 1], x3[i + 2], x3[i + 3]
        for j in range(width):
            c0, c1, c2, c3 = _high(p0[j]), _low(p0[j]), _high(p1[j]), _low(p1[j])
            a0[j] += b00 * c0 + b01 * c1 + b02 * c2 + b03 * c3
            a1[j] += b10 * c0 + b11 * c1 + b12 * c2 + b13 * c3
            a2[j] += b20 * c0 + b21 * c1 + b22 * c2 + b23 * c3
            a3[j] += b30 * c0 + b31 * c1 + b32 * c2 + b33 * c3
    for i in range(quads, n, 2):
        pair = w[i // 2]
        u0, u1, u2, u3 = x0[i], x1[i], x2[i], x3[i]
        if i + 1 < n:
            v0, v1, v2, v3 = x0[i + 1], x1[i + 1], x2[i + 1], x3[i + 1]
        else:
            v0 = v1 = v2 = v3 = np.float32(0.0)
        for j in range(width):
            c0, c1 = _high(pair[j]), _low(pair[j])
            a0[j] += u0 * c0 + v0 * c1
            a1[j] += u1 * c0 + v1 * c1
            a2[j] += u2 * c0 + v2 * c1
            a3[j] += u3 * c0 + v3 * c1


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
        ratio = _exp(logits[k] / temperature - top)  # p_k / p_max
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
    rings: np.ndarray,  # (sum(dilation + 1), batch, r): every layer's ring, slot by slot
    offsets: np.ndarray,  # (layers,) first ring slot of each layer
    slots: np.ndarray,  # (layers,) dilation + 1
    previous: np.ndarray,  # (batch,) int64: the class before step t0, updated
    before: np.ndarray,  # (batch,) int64: the class before that (classes: none yet), updated
    embed: np.ndarray,
    first_taps: np.ndarray,  # (2, classes + 1, 2r): layer 0's taps of each class (and of zeros)
    taps: np.ndarray,  # (layers, 2r, 2r): rows of x[t], x[t - d] interleaved; layer 0 uses first_taps
    res_skip: np.ndarray,  # (layers, r, r + s): residual then skip weights (the last's residual unused)
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
    """``count`` cached decoder steps from step ``t0`` for every row, all in this one call.

    Each product runs over the whole batch (``_product``), so a weight loaded for one row serves
    the next three from registers; a layer is two products, its taps of ``x[t]`` and ``x[t - d]``
    as one (``_taps``) and its residual and skip as one (``_residual_skip``), so each reads its
    input once. Sums start from where their first term lies (the conditioning, the residual,
    a bias) rather than from a copy of it: the copies cost a quarter of the step."""
    batch, r = rings.shape[1], rings.shape[2]
    layers, s, classes = taps.shape[0], skip_bias.shape[0], head2_bias.shape[0]
    hidden_width = head1_bias.shape[0]
    inputs = np.empty((batch, 2 * r), dtype=np.float32)  # the widening path's x[t], x[t - d]
    outputs = np.empty((batch, r + s), dtype=np.float32)  # the widening path's residual, skip
    a = np.empty((batch, 2 * r), dtype=np.float32)
    z = np.empty((batch, r), dtype=np.float32)
    unused = np.empty((batch, r), dtype=np.float32)  # the last layer's residual
    skip = np.empty((batch, s), dtype=np.float32)
    rectified = np.empty((batch, s), dtype=np.float32)
    hidden = np.empty((batch, hidden_width), dtype=np.float32)
    logits = np.empty((batch, classes), dtype=np.float32)
    head1_start = np.empty((batch, hidden_width), dtype=np.float32)
    head2_start = np.empty((batch, classes), dtype=np.float32)
    for b in range(batch):
        head1_start[b] = head1_bias
        head2_start[b] = head2_bias
    scratch = np.empty(classes, dtype=np.float32)
    words = np.empty((batch, max(r, s, hidden_width)), dtype=np.uint32)  # a product's input, as bf16 pairs
    forced = targets.shape[0] > 0
    record = logits_out.shape[0] > 0
    zero = np.float32(0.0)
    for step in range(count):
        t = t0 + step
        first = rings[offsets[0] + t % slots[0]]
        for b in range(batch):
            embedded = embed[previous[b]]
            for i in range(r):
                first[b, i] = embedded[i]
            for i in range(s):
                skip[b, i] = skip_bias[i]
        for layer in range(layers):
            now = rings[offsets[layer] + t % slots[layer]]
            past = rings[offsets[layer] + (t + 1) % slots[layer]]  # holds x[t - dilation]
            following = unused if layer + 1 == layers else rings[offsets[layer + 1] + t % slots[layer + 1]]
            base = 2 * r * layer
            if layer == 0:
                for b in range(batch):
                    tap_now, tap_past = first_taps[0, previous[b]], first_taps[1, before[b]]
                    for i in range(2 * r):
                        a[b, i] = condition[b, i] + tap_now[i] + tap_past[i]
            else:
                _taps(a, condition[:, base : base + 2 * r], now, past, taps[layer], inputs, words)
            for b in range(batch):
                _sigmoid_inplace(a[b])
                for i in range(r):  # -tanh(a1) sigmoid(a2), signs folded into the weights
                    z[b, i] = a[b, r + i] - np.float32(2.0) * a[b, i] * a[b, r + i]
            _residual_skip(following, skip, now, z, res_skip[layer], outputs, words)
        for b in range(batch):
            for i in range(s):
                rectified[b, i] = max(skip[b, i], zero)
        _product(hidden, head1_start, rectified, head1_weight, words)
        for b in range(batch):
            for i in range(hidden_width):
                hidden[b, i] = max(hidden[b, i], zero)
        _product(logits, head2_start, hidden, head2_weight, words)
        for b in range(batch):
            if record:
                logits_out[b, step] = logits[b]
            if forced:
                chosen = targets[b, step]
            else:
                chosen = _pick(logits[b], uniforms[step, b], temperature, min_p, scratch)
            out[b, step] = chosen
            before[b] = previous[b]
            previous[b] = chosen


_compile_lock = threading.Lock()


@cache
def compiled() -> SimpleNamespace:
    """The kernels compiled by numba, or loaded from its on-disk cache (``cache=True``): done on
    first use, so importing this module costs nothing. The kernels call each other through this
    module's globals, so those are replaced by their compiled versions (``_accumulate`` and
    ``_accumulate4`` by a choice between their two forms made when numba types the call)."""
    global _as_float32, _high, _low, _exp, _sigmoid_inplace, _pick, _steps
    global _accumulate_float32, _accumulate_pairs, _accumulate4_float32, _accumulate4_pairs, _accumulate_batch
    global _round_pairs, _round_interleaved, _dot4, _dot1, _accumulate_native, _dot_blocks, _copy
    global _start_and_accumulate, _taps_widening, _taps_native, _residual_skip_widening, _residual_skip_native
    import numba
    from numba import types
    from numba.extending import overload

    options = {"fastmath": True, "nogil": True, "error_model": "numpy"}

    def jit(function: Callable) -> Callable:
        return numba.njit(cache=True, **options)(function)

    with _compile_lock:
        _as_float32 = _bit_cast_intrinsic()
        _high, _low, _exp = jit(_high), jit(_low), jit(_exp)
        _sigmoid_inplace, _pick = jit(_sigmoid_inplace), jit(_pick)
        _accumulate_float32, _accumulate_pairs = jit(_accumulate_float32), jit(_accumulate_pairs)

        def dispatch(stub: Callable, pairs: Callable, floats: Callable) -> None:
            """``stub`` compiled as ``pairs`` for bfloat16 pairs of rows, else ``floats``."""

            @overload(stub, jit_options=options)
            def typed(acc, x, w):  # no annotations: numba compares this signature with the lambda's
                chosen = pairs if w.dtype == types.uint32 else floats
                return lambda acc, x, w: chosen(acc, x, w)

        _accumulate4_float32, _accumulate4_pairs = jit(_accumulate4_float32), jit(_accumulate4_pairs)
        dispatch(_accumulate, _accumulate_pairs, _accumulate_float32)
        dispatch(_accumulate4, _accumulate4_pairs, _accumulate4_float32)
        _accumulate_batch, _copy = jit(_accumulate_batch), jit(_copy)
        _start_and_accumulate = jit(_start_and_accumulate)
        native = bf16_dot.available()
        if native:
            _round_pairs, _round_interleaved, _dot4, _dot1 = (
                jit(bf16_dot.round_pairs),
                jit(bf16_dot.round_interleaved),
                bf16_dot.dot_block(ROWS),
                bf16_dot.dot_block(1),
            )
            _dot_blocks = jit(_dot_blocks)

        def choose(stub: Callable, native_form: Callable | None, widening: Callable) -> None:
            """``stub`` (seven arguments, the matrix fifth) compiled as ``native_form`` for
            bfloat16 pairs of rows on a CPU with the instruction, else as ``widening``."""

            @overload(stub, jit_options=options)
            def typed(p1, p2, p3, p4, w, p6, p7):  # no annotations, as in ``dispatch``
                chosen = native_form if native and w.dtype == types.uint32 else widening
                return lambda p1, p2, p3, p4, w, p6, p7: chosen(p1, p2, p3, p4, w, p6, p7)

        @overload(_product, jit_options=options)
        def typed_product(result, start, x, w, words):  # no annotations, as in ``dispatch``
            if native and w.dtype == types.uint32:
                return lambda result, start, x, w, words: _accumulate_native(result, start, x, w, words)
            return lambda result, start, x, w, words: _start_and_accumulate(result, start, x, w)

        if native:
            _accumulate_native = jit(_accumulate_native)
        _taps_widening, _residual_skip_widening = jit(_taps_widening), jit(_residual_skip_widening)
        if native:
            _taps_native, _residual_skip_native = jit(_taps_native), jit(_residual_skip_native)
        choose(_taps, _taps_native if native else None, _taps_widening)
        choose(_residual_skip, _residual_skip_native if native else None, _residual_skip_widening)

        _steps = jit(_steps)
    return SimpleNamespace(steps=_steps, pick=_pick)


class FusedState:
    """One batch of streams: every layer's ring, the last class of each row and the step count."""

    def __init__(self, decoder: FusedDecoder, batch: int) -> None:
        rings = [
            np.broadcast_to(init, (slots, batch, init.shape[0]))
            for init, slots in zip(decoder.ring_init, decoder.slots, strict=True)
        ]  # (slots, batch, r): a slot of every row is one contiguous block
        self.rings = np.ascontiguousarray(np.concatenate(rings))
        self.previous = np.full(batch, START_CLASS, dtype=np.int64)
        self.before = np.full(batch, decoder.first_taps.shape[1] - 1, dtype=np.int64)  # zeros
        self.condition = np.zeros((batch, decoder.cond_weight.shape[1]), dtype=np.float32)
        self.t = 0

    @property
    def batch(self) -> int:
        return self.rings.shape[1]

    def reorder(self, rows: np.ndarray) -> None:
        """Row ``i`` takes row ``rows[i]``'s history: its rings and its last two classes."""
        self.rings[:] = self.rings[:, rows]
        for history in (self.previous, self.before):
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
        self.taps = np.stack([m(torch.stack([t[:r], t[r:]], dim=1).reshape(2 * r, -1)) for t in weights.taps])
        skips = weights.skip_weight.reshape(layers, r, -1)
        self.res_skip = np.stack(
            [m(torch.cat([res, skip], dim=1)) for res, skip in zip(weights.res_weight, skips, strict=True)]
        )
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
            self.res_skip,
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
